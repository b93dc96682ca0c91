package actors

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is a parsed reminder or timer period: a calendar part (years,
// months, days, applied with time.AddDate so that "P1M" is a month, not 30
// days), a clock part, and how many times the reminder fires in total.
type Period struct {
	// Raw is the text as the caller gave it; callbacks echo it back.
	Raw                 string
	Years, Months, Days int
	Duration            time.Duration
	// Repeats is the number of firings; -1 means unlimited.
	Repeats int
}

// HasInterval reports whether the period repeats at all; a reminder
// without one fires once.
func (p Period) HasInterval() bool {
	return p.Years != 0 || p.Months != 0 || p.Days != 0 || p.Duration != 0
}

// After returns the firing that follows t.
func (p Period) After(t time.Time) time.Time {
	return t.AddDate(p.Years, p.Months, p.Days).Add(p.Duration)
}

// ParsePeriod reads a period in the forms daprd accepts: a Go duration
// ("1m30s"), an ISO-8601 duration ("PT1M30S", "P1DT2H", "P2W"), or an
// ISO-8601 repeating interval ("R5/PT1S": five firings one second apart).
// The empty string is a one-shot period. Zero repetitions and negative
// periods are refused: the first is daprd's rule, the second would fire in
// a tight loop.
func ParsePeriod(s string) (Period, error) {
	p := Period{Raw: s, Repeats: -1}
	if s == "" {
		return p, nil
	}
	y, m, d, dur, rep, err := parseISODuration(s)
	if err != nil {
		gd, gerr := time.ParseDuration(s)
		if gerr != nil {
			return p, fmt.Errorf("unsupported duration format %q: use a Go duration (1m30s), an ISO-8601 duration (PT1M30S) or a repetition (R5/PT1S)", s)
		}
		dur, rep = gd, -1
	}
	if rep == 0 {
		return p, errors.New("has zero repetitions")
	}
	if dur < 0 || y < 0 || m < 0 || d < 0 {
		return p, fmt.Errorf("period %q is negative", s)
	}
	p.Years, p.Months, p.Days, p.Duration, p.Repeats = y, m, d, dur, rep
	return p, nil
}

// ParseTime reads a due time or TTL: an RFC 3339 instant, or a Go or
// ISO-8601 duration counted from base. Repetitions are not allowed here.
func ParseTime(s string, base time.Time) (time.Time, error) {
	if y, m, d, dur, rep, err := parseISODuration(s); err == nil {
		if rep != -1 {
			return time.Time{}, errors.New("repetitions are not allowed")
		}
		return base.AddDate(y, m, d).Add(dur), nil
	}
	if dur, err := time.ParseDuration(s); err == nil {
		return base.Add(dur), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("unsupported time/duration format %q", s)
}

// parseISODuration reads "[R<n>/]P[nY][nM][nW][nD][T[nH][nM][n[.n]S]]", and
// also the bare "R<n>" and "R<n>/" forms daprd takes (repetitions without
// an interval). rep is -1 when no repetition count is given.
func parseISODuration(s string) (y, m, d int, dur time.Duration, rep int, err error) {
	rep = -1
	bad := func() (int, int, int, time.Duration, int, error) {
		return 0, 0, 0, 0, 0, fmt.Errorf("%q is not an ISO-8601 duration", s)
	}
	rest := s
	if strings.HasPrefix(rest, "R") {
		countText, after, found := strings.Cut(rest[1:], "/")
		n, perr := strconv.Atoi(countText)
		if perr != nil || n < 0 {
			return bad()
		}
		rep = n
		if !found || after == "" {
			return 0, 0, 0, 0, rep, nil
		}
		rest = after
	}
	if len(rest) < 2 || rest[0] != 'P' {
		return bad()
	}
	rest = rest[1:]
	inTime := false
	parts := 0
	for len(rest) > 0 {
		if rest[0] == 'T' {
			if inTime || len(rest) == 1 {
				return bad()
			}
			inTime = true
			rest = rest[1:]
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) {
			return bad()
		}
		num, unit := rest[:i], rest[i]
		rest = rest[i+1:]
		parts++
		if inTime {
			f, perr := strconv.ParseFloat(num, 64)
			if perr != nil {
				return bad()
			}
			var u time.Duration
			switch unit {
			case 'H':
				u = time.Hour
			case 'M':
				u = time.Minute
			case 'S':
				u = time.Second
			default:
				return bad()
			}
			if f*float64(u) > float64(1<<62) {
				return bad()
			}
			dur += time.Duration(f * float64(u))
			continue
		}
		n, perr := strconv.Atoi(num)
		if perr != nil || n > 1<<20 {
			return bad()
		}
		switch unit {
		case 'Y':
			y += n
		case 'M':
			m += n
		case 'W':
			d += 7 * n
		case 'D':
			d += n
		default:
			return bad()
		}
	}
	if parts == 0 {
		return bad()
	}
	return y, m, d, dur, rep, nil
}
