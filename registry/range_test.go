package registry

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const rangeTestSize = 100

var maxIntString = strconv.FormatInt(math.MaxInt64, 10)

// parseRangeCases are hand-written answers of parseRange; the fuzz model is
// checked against them too.
var parseRangeCases = []struct {
	spec       string
	size       int64
	start, end int64
	err        error
}{
	// Satisfiable: [start, end).
	{"bytes=0-0", rangeTestSize, 0, 1, nil},
	{"bytes=0-99", rangeTestSize, 0, 100, nil},
	{"bytes=10-19", rangeTestSize, 10, 20, nil},
	{"bytes=99-99", rangeTestSize, 99, 100, nil},
	{"bytes=10-", rangeTestSize, 10, 100, nil},
	{"bytes=0-", rangeTestSize, 0, 100, nil},
	{"bytes=99-", rangeTestSize, 99, 100, nil},
	{"bytes=-1", rangeTestSize, 99, 100, nil},
	{"bytes=-10", rangeTestSize, 90, 100, nil},
	{"bytes=-100", rangeTestSize, 0, 100, nil},
	{"bytes=-101", rangeTestSize, 0, 100, nil},
	{"bytes=-" + maxIntString, rangeTestSize, 0, 100, nil},
	{"bytes=50-1000", rangeTestSize, 50, 100, nil},
	{"bytes=0-" + maxIntString, rangeTestSize, 0, 100, nil},
	{"bytes=" + maxIntString[:18] + "-" + maxIntString, math.MaxInt64, 922337203685477580, math.MaxInt64, nil},
	{"bytes=0-" + maxIntString, math.MaxInt64, 0, math.MaxInt64, nil},
	{"bytes=-1", math.MaxInt64, math.MaxInt64 - 1, math.MaxInt64, nil},
	{"bytes=007-010", rangeTestSize, 7, 11, nil},
	{"  bytes=1-2  ", rangeTestSize, 1, 3, nil},
	{"bytes= 1-2 ", rangeTestSize, 1, 3, nil},
	{"bytes=0-0", 1, 0, 1, nil},
	{"bytes=-5", 1, 0, 1, nil},

	// Unsatisfiable.
	{"bytes=100-", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=100-100", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=100-200", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=" + maxIntString + "-", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=-0", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=-000", rangeTestSize, 0, 0, errUnsatisfiable},
	{"bytes=0-0", 0, 0, 0, errUnsatisfiable},
	{"bytes=0-", 0, 0, 0, errUnsatisfiable},
	{"bytes=-1", 0, 0, 0, errUnsatisfiable},

	// Malformed or not served: the whole blob goes out.
	{"", rangeTestSize, 0, 0, errBadRange},
	{"bytes", rangeTestSize, 0, 0, errBadRange},
	{"bytes=", rangeTestSize, 0, 0, errBadRange},
	{"bytes=-", rangeTestSize, 0, 0, errBadRange},
	{"bytes=5", rangeTestSize, 0, 0, errBadRange},
	{"bytes=a-b", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1-a", rangeTestSize, 0, 0, errBadRange},
	{"bytes=9-5", rangeTestSize, 0, 0, errBadRange},
	{"bytes=200-150", rangeTestSize, 0, 0, errBadRange},
	{"bytes=0-1,5-6", rangeTestSize, 0, 0, errBadRange},
	{"bytes=0-1, 5-6", rangeTestSize, 0, 0, errBadRange},
	{"bytes=-5,0-1", rangeTestSize, 0, 0, errBadRange},
	{"bytes=0-1,", rangeTestSize, 0, 0, errBadRange},
	{"bytes=--5", rangeTestSize, 0, 0, errBadRange},
	{"bytes=+1-2", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1-+2", rangeTestSize, 0, 0, errBadRange},
	{"bytes=-+5", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1 -2", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1- 2", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1-2-3", rangeTestSize, 0, 0, errBadRange},
	{"bytes=0x1-0x2", rangeTestSize, 0, 0, errBadRange},
	{"bytes=1e2-", rangeTestSize, 0, 0, errBadRange},
	{"bytes=١-٢", rangeTestSize, 0, 0, errBadRange},
	{"Bytes=0-1", rangeTestSize, 0, 0, errBadRange},
	{"items=0-1", rangeTestSize, 0, 0, errBadRange},
	{"bytes 0-1", rangeTestSize, 0, 0, errBadRange},
	{"bytes=9223372036854775808-", rangeTestSize, 0, 0, errBadRange},
	{"bytes=0-9223372036854775808", rangeTestSize, 0, 0, errBadRange},
	{"bytes=-9223372036854775808", rangeTestSize, 0, 0, errBadRange},
	{"bytes=99999999999999999999-", rangeTestSize, 0, 0, errBadRange},
	{"bytes=00000000000000000001-", rangeTestSize, 0, 0, errBadRange},
}

func TestParseRange(t *testing.T) {
	for _, tc := range parseRangeCases {
		t.Run(tc.spec+"/"+strconv.FormatInt(tc.size, 10), func(t *testing.T) {
			got, err := parseRange(tc.spec, tc.size)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				assert.Equal(t, byteRange{}, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, byteRange{start: tc.start, end: tc.end}, got)
		})
	}
}

func TestParseOffset(t *testing.T) {
	for s, want := range map[string]int64{
		"0":                   0,
		"007":                 7,
		"9223372036854775807": math.MaxInt64,
	} {
		got, err := parseOffset(s)
		require.NoError(t, err, "%q", s)
		assert.Equal(t, want, got, "%q", s)
	}
	for _, s := range []string{"", "-1", "+1", " 1", "1 ", "1_000", "9223372036854775808", "00000000000000000000"} {
		_, err := parseOffset(s)
		assert.Error(t, err, "%q", s)
	}
}
