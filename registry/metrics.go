package registry

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// routeNames label requests in the access log and the metrics.
var routeNames = map[routeKind]string{
	routeBase:      "base",
	routeCatalog:   "catalog",
	routeManifest:  "manifest",
	routeBlob:      "blob",
	routeUpload:    "upload",
	routeTags:      "tags",
	routeReferrers: "referrers",
}

// metrics counts what the registry served.
type metrics struct {
	mu       sync.Mutex
	requests map[requestKey]uint64
	bytes    atomic.Uint64
	streams  atomic.Int64
}

type requestKey struct {
	route  string
	status int
}

func (m *metrics) observe(route string, status int, bytes int64) {
	m.mu.Lock()
	if m.requests == nil {
		m.requests = map[requestKey]uint64{}
	}
	m.requests[requestKey{route, status}]++
	m.mu.Unlock()
	m.bytes.Add(uint64(bytes))
}

// WriteMetrics writes the registry's counters in the Prometheus text
// exposition format: requests by route and status, bytes served and blob
// streams in flight.
func (reg *Registry) WriteMetrics(w io.Writer) error {
	m := &reg.metrics
	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	counts := make([]uint64, len(keys))
	slices.SortFunc(keys, func(a, b requestKey) int {
		if a.route != b.route {
			if a.route < b.route {
				return -1
			}
			return 1
		}
		return a.status - b.status
	})
	for i, k := range keys {
		counts[i] = m.requests[k]
	}
	m.mu.Unlock()

	_, err := fmt.Fprintf(w, "# HELP quinistry_requests_total Requests answered, by API route and HTTP status.\n# TYPE quinistry_requests_total counter\n")
	for i, k := range keys {
		if err == nil {
			_, err = fmt.Fprintf(w, "quinistry_requests_total{route=%q,status=\"%d\"} %d\n", k.route, k.status, counts[i])
		}
	}
	if err == nil {
		_, err = fmt.Fprintf(w, "# HELP quinistry_response_bytes_total Response body bytes sent.\n# TYPE quinistry_response_bytes_total counter\nquinistry_response_bytes_total %d\n"+
			"# HELP quinistry_blob_streams_in_flight Blob downloads being sent now.\n# TYPE quinistry_blob_streams_in_flight gauge\nquinistry_blob_streams_in_flight %d\n"+
			"# HELP quinistry_blob_streams_limit The most blob downloads sent at once (0: no limit).\n# TYPE quinistry_blob_streams_limit gauge\nquinistry_blob_streams_limit %s\n",
			m.bytes.Load(), m.streams.Load(), strconv.Itoa(cap(reg.streams)))
	}
	return err
}
