package hashing

// Points exposes a ring's points and their owners' names to the tests.
func Points(r *Ring) ([]uint64, []string) {
	owners := make([]string, len(r.owners))
	for i, o := range r.owners {
		owners[i] = r.hosts[o]
	}
	return r.points, owners
}
