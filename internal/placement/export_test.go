package placement

import "context"

// Kill stops the server as a crash would: no leadership handover, streams
// cut at once.
func (s *Server) Kill() error { return s.stop(context.Background(), false) }
