package registry

import (
	"errors"
	"strconv"
	"strings"
)

// byteRange is the half-open interval [start, end) of a blob.
type byteRange struct{ start, end int64 }

var (
	errUnsatisfiable = errors.New("range not satisfiable")
	errBadRange      = errors.New("malformed or multi-part range")
)

// parseRange parses a Range header holding one byte range (bytes=a-b,
// bytes=a- or bytes=-n) against a blob of size bytes. It returns
// errUnsatisfiable for a well-formed range that selects nothing, and
// errBadRange for anything else it does not serve (the caller then sends the
// whole blob, as RFC 9110 allows).
func parseRange(spec string, size int64) (byteRange, error) {
	v, ok := strings.CutPrefix(strings.TrimSpace(spec), "bytes=")
	if !ok || strings.Contains(v, ",") {
		return byteRange{}, errBadRange
	}
	first, last, ok := strings.Cut(strings.TrimSpace(v), "-")
	if !ok {
		return byteRange{}, errBadRange
	}
	if first == "" {
		n, err := parseOffset(last)
		if err != nil {
			return byteRange{}, errBadRange
		}
		if n == 0 || size == 0 {
			return byteRange{}, errUnsatisfiable
		}
		return byteRange{start: max(size-n, 0), end: size}, nil
	}
	start, err := parseOffset(first)
	if err != nil {
		return byteRange{}, errBadRange
	}
	end := size
	if last != "" {
		e, err := parseOffset(last)
		if err != nil || e < start {
			return byteRange{}, errBadRange
		}
		// Clamp before adding one: e+1 overflows when e is MaxInt64.
		end = min(e, size-1) + 1
	}
	if start >= size {
		return byteRange{}, errUnsatisfiable
	}
	return byteRange{start: start, end: end}, nil
}

// parseOffset parses a non-negative decimal without sign, spaces or
// overflow.
func parseOffset(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errBadRange
	}
	return strconv.ParseInt(s, 10, 64)
}
