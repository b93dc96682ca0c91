package actors

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Defaults of the app's actor configuration, as daprd's.
const (
	DefaultIdleTimeout   = 60 * time.Minute
	DefaultScanInterval  = 30 * time.Second
	DefaultDrainTimeout  = 60 * time.Second
	DefaultMaxStackDepth = 32
	// DefaultReminderPartitions is how many index records the reminders of
	// one actor type are spread over unless the app asks for more with
	// remindersStoragePartitions.
	DefaultReminderPartitions = 16
	// maxReminderPartitions bounds what an app may ask for.
	maxReminderPartitions = 4096
)

// AppConfig is the JSON the app answers to GET /dapr/config.
type AppConfig struct {
	Entities                   []string         `json:"entities"`
	ActorIdleTimeout           string           `json:"actorIdleTimeout"`
	ActorScanInterval          string           `json:"actorScanInterval"`
	DrainOngoingCallTimeout    string           `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors      *bool            `json:"drainRebalancedActors"`
	Reentrancy                 ReentrancyConfig `json:"reentrancy"`
	RemindersStoragePartitions int              `json:"remindersStoragePartitions"`
	EntitiesConfig             []EntityConfig   `json:"entitiesConfig"`
}

// ReentrancyConfig is the "reentrancy" object of /dapr/config.
type ReentrancyConfig struct {
	Enabled       bool `json:"enabled"`
	MaxStackDepth *int `json:"maxStackDepth"`
}

// EntityConfig overrides the app-wide settings for some actor types.
type EntityConfig struct {
	Entities                   []string          `json:"entities"`
	ActorIdleTimeout           string            `json:"actorIdleTimeout"`
	DrainOngoingCallTimeout    string            `json:"drainOngoingCallTimeout"`
	DrainRebalancedActors      *bool             `json:"drainRebalancedActors"`
	Reentrancy                 *ReentrancyConfig `json:"reentrancy"`
	RemindersStoragePartitions int               `json:"remindersStoragePartitions"`
}

// TypeConfig is the effective configuration of one hosted actor type.
type TypeConfig struct {
	IdleTimeout   time.Duration
	DrainTimeout  time.Duration
	Drain         bool
	Reentrant     bool
	MaxStackDepth int
	// Partitions is the reminder index partition count asked for; the
	// count stored with the index wins once the index exists.
	Partitions int
}

// hostConfig is the parsed configuration: hosted types and the scan
// interval of idle deactivation.
type hostConfig struct {
	types        map[string]TypeConfig
	order        []string // hosted types in the app's order
	scanInterval time.Duration
}

// parseAppConfig decodes body; bad durations are logged and replaced by the
// defaults, as daprd does, so that one typo does not disable actors.
func parseAppConfig(body []byte, log *slog.Logger) (hostConfig, error) {
	var ac AppConfig
	hc := hostConfig{types: map[string]TypeConfig{}, scanInterval: DefaultScanInterval}
	if len(body) == 0 {
		return hc, nil
	}
	if err := json.Unmarshal(body, &ac); err != nil {
		return hc, err
	}
	dur := func(field, v string, def time.Duration) time.Duration {
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			log.Warn("invalid duration in the app's /dapr/config; using the default", "field", field, "value", v, "default", def)
			return def
		}
		return d
	}
	hc.scanInterval = dur("actorScanInterval", ac.ActorScanInterval, DefaultScanInterval)
	base := TypeConfig{
		IdleTimeout:   dur("actorIdleTimeout", ac.ActorIdleTimeout, DefaultIdleTimeout),
		DrainTimeout:  dur("drainOngoingCallTimeout", ac.DrainOngoingCallTimeout, DefaultDrainTimeout),
		Drain:         ac.DrainRebalancedActors == nil || *ac.DrainRebalancedActors,
		Reentrant:     ac.Reentrancy.Enabled,
		MaxStackDepth: stackDepth(ac.Reentrancy.MaxStackDepth),
		Partitions:    partitions(ac.RemindersStoragePartitions),
	}
	add := func(t string, c TypeConfig) {
		if t == "" {
			return
		}
		if _, ok := hc.types[t]; !ok {
			hc.order = append(hc.order, t)
		}
		hc.types[t] = c
	}
	for _, t := range ac.Entities {
		add(t, base)
	}
	for _, ec := range ac.EntitiesConfig {
		c := base
		c.IdleTimeout = dur("entitiesConfig.actorIdleTimeout", ec.ActorIdleTimeout, base.IdleTimeout)
		c.DrainTimeout = dur("entitiesConfig.drainOngoingCallTimeout", ec.DrainOngoingCallTimeout, base.DrainTimeout)
		if ec.DrainRebalancedActors != nil {
			c.Drain = *ec.DrainRebalancedActors
		}
		if ec.Reentrancy != nil {
			c.Reentrant = ec.Reentrancy.Enabled
			c.MaxStackDepth = stackDepth(ec.Reentrancy.MaxStackDepth)
		}
		if ec.RemindersStoragePartitions > 0 {
			c.Partitions = partitions(ec.RemindersStoragePartitions)
		}
		for _, t := range ec.Entities {
			add(t, c)
		}
	}
	return hc, nil
}

func stackDepth(v *int) int {
	if v == nil || *v <= 0 {
		return DefaultMaxStackDepth
	}
	return *v
}

func partitions(n int) int {
	switch {
	case n <= 0:
		return DefaultReminderPartitions
	case n > maxReminderPartitions:
		return maxReminderPartitions
	}
	return n
}
