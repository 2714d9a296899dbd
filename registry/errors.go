// Package registry serves quinistry's content over the read side of the
// OCI distribution API (the Docker registry v2 pull protocol).
package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorCode is one row of the error table: the spec's code, the HTTP status
// it is sent with and a default message.
type ErrorCode struct {
	Code    string
	Status  int
	Message string
}

// The error table. Every error the registry sends is one of these. The
// spec's TAG_INVALID (a pushed manifest's tag does not match its URL) is not
// among them: quinistry takes no pushes, and an invalid tag in a pull gets
// 404 MANIFEST_UNKNOWN, as the conformance suite requires.
var (
	ErrNameUnknown       = ErrorCode{"NAME_UNKNOWN", http.StatusNotFound, "repository name not known to registry"}
	ErrManifestUnknown   = ErrorCode{"MANIFEST_UNKNOWN", http.StatusNotFound, "manifest unknown"}
	ErrBlobUnknown       = ErrorCode{"BLOB_UNKNOWN", http.StatusNotFound, "blob unknown to registry"}
	ErrNotFound          = ErrorCode{"NOT_FOUND", http.StatusNotFound, "no such API endpoint"}
	ErrNameInvalid       = ErrorCode{"NAME_INVALID", http.StatusBadRequest, "invalid repository name"}
	ErrDigestInvalid     = ErrorCode{"DIGEST_INVALID", http.StatusBadRequest, "provided digest did not match uploaded content"}
	ErrPaginationInvalid = ErrorCode{"PAGINATION_NUMBER_INVALID", http.StatusBadRequest, "invalid number of results requested"}
	ErrRangeInvalid      = ErrorCode{"RANGE_INVALID", http.StatusRequestedRangeNotSatisfiable, "invalid content range"}
	ErrUnsupported       = ErrorCode{"UNSUPPORTED", http.StatusMethodNotAllowed, "the operation is unsupported: this registry is read-only"}
	ErrTooManyRequests   = ErrorCode{"TOOMANYREQUESTS", http.StatusTooManyRequests, "too many requests"}
)

// apiError is an error code with the detail of one occurrence.
type apiError struct {
	ErrorCode
	Detail string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Detail }

func newError(code ErrorCode, detail string) *apiError {
	return &apiError{ErrorCode: code, Detail: detail}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  string `json:"detail,omitempty"`
}

// writeError sends e as the spec's error JSON with e's status. HEAD
// responses carry the headers only.
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	body, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
