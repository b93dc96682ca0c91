package accesscontrol

import "strings"

// trie matches methods against operation names segment by segment, with
// the results daprd's ACL trie (pkg/config/acl_trie.go) gives, including
// its quirks, so that a policy written for daprd means the same here:
//
//   - A segment of a name may hold '*', matching any run of characters
//     within one segment of the method ("/op*" matches "/op1").
//   - A last segment "*" matches exactly one more segment, or none
//     ("/a/*" matches "/a/b" and "/a", not "/a/b/c").
//   - A segment "**" matches everything from there on ("/a/**" matches
//     "/a", "/a/b" and "/a/b/c").
//   - A name matches the methods below it too: "/op" matches "/op/x"
//     (daprd returns the first operation found on the way down).
//   - Siblings are tried in the order they were configured and the walk
//     never backtracks: once a segment matched one sibling, the others are
//     not tried for the rest of the method.
//   - The first of two operations with the same name wins.
type trie struct {
	children []*trieNode
}

type trieNode struct {
	segment  string
	op       *operation
	children []*trieNode
}

// insert adds op under name ("/a/b/*").
func (t *trie) insert(name string, op *operation) {
	segs := strings.Split(name, "/")[1:]
	level := &t.children
	var n *trieNode
	for _, s := range segs {
		n = nil
		for _, c := range *level {
			if c.segment == s {
				n = c
				break
			}
		}
		if n == nil {
			n = &trieNode{segment: s}
			*level = append(*level, n)
		}
		level = &n.children
	}
	if n.op == nil {
		n.op = op
	}
}

// search returns the operation method ("/a/b") falls under, or nil.
func (t *trie) search(method string) *operation {
	segs := strings.Split(method, "/")[1:]
	level := t.children
	for i, s := range segs {
		last := i == len(segs)-1
		n := pick(level, s, last)
		if n == nil {
			return nil
		}
		if n.op != nil {
			if !last && n.segment == "*" {
				// Only a method with a literal "*" segment gets here;
				// daprd walks on below it.
				level = n.children
				continue
			}
			return n.op
		}
		if last {
			// "/a" is also matched by an operation "/a/*" or "/a/**".
			if w := pick(n.children, "*", true); w != nil {
				return w.op
			}
			return nil
		}
		level = n.children
	}
	return nil
}

// pick returns the first of nodes matching segment s: equal to it, "*"
// when s is the method's last segment, "**", or a pattern with '*'.
func pick(nodes []*trieNode, s string, last bool) *trieNode {
	for _, n := range nodes {
		switch {
		case n.segment == s:
			return n
		case n.segment == "*":
			if last {
				return n
			}
		case n.segment == "**":
			return n
		case glob(n.segment, s):
			return n
		}
	}
	return nil
}

// glob reports whether s matches pattern, where '*' stands for any run of
// characters (also none).
func glob(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	// Iterative matching with one backtrack point: the last '*' seen.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
