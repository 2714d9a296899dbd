package harness

import "io"

// FollowLog reads log lines from r as they arrive (the output of
// `docker logs --follow`, say) until r ends, so that a test can Wait for a
// line instead of sleeping.
func FollowLog(r io.Reader) *Log {
	l := newLog()
	go l.read(r)
	return l
}
