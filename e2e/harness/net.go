package harness

import (
	"net"
	"testing"
)

// FreeAddr returns 127.0.0.1:PORT for a port that was free a moment ago: for
// the few cases where a test must name the port before the server starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
