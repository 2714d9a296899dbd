package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// client speaks to one registry: it adds credentials, answers basic and
// bearer challenges (caching one token per scope set), and retries.
type client struct {
	http    *http.Client
	base    string // scheme://host
	host    string // host as the user wrote it, for credentials and messages
	creds   Credential
	retries int
	backoff time.Duration

	fetchMu   sync.Mutex // one token fetch at a time, so concurrent blobs share it
	mu        sync.Mutex
	challenge *Challenge
	tokens    map[string]string
}

// request builds a fresh request each attempt, so bodies can be resent.
type request func(ctx context.Context) (*http.Request, error)

// newRequest returns a request with a body made from data.
func newRequest(method, url string, data []byte, header http.Header) request {
	return func(ctx context.Context) (*http.Request, error) {
		var body io.Reader
		if data != nil {
			body = strings.NewReader(string(data))
		}
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		if data != nil {
			req.ContentLength = int64(len(data))
		}
		return req, nil
	}
}

// retryError is a failure worth trying again, after at least After.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// do sends a request with authorization for scopes. Requests that can be
// repeated safely (repeatable) are retried here on 429, 5xx and dropped
// connections; for the others such a failure comes back as a *retryError
// for the caller to start over.
func (c *client) do(ctx context.Context, build request, scopes []string, repeatable bool) (*http.Response, error) {
	authRetried := false
	for attempt := 0; ; attempt++ {
		req, err := build(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.authorize(ctx, req, scopes); err != nil {
			return nil, err
		}
		resp, err := c.http.Do(req)
		var rerr *retryError
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !transient(err) {
				return nil, c.transportError(err)
			}
			rerr = &retryError{err: c.transportError(err)}
		case resp.StatusCode == http.StatusUnauthorized && !authRetried:
			authRetried = true
			chs := ParseChallenges(resp.Header)
			drain(resp)
			if err := c.answer(ctx, chs, scopes); err != nil {
				return nil, err
			}
			attempt--
			continue
		case resp.StatusCode == http.StatusUnauthorized:
			err := statusError(resp)
			drain(resp)
			return nil, c.authError(fmt.Errorf("credentials rejected: %v", err))
		case resp.StatusCode == http.StatusForbidden:
			err := statusError(resp)
			drain(resp)
			return nil, fmt.Errorf("%s: %v: no permission to push here", c.host, err)
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			rerr = &retryError{err: statusError(resp), after: retryAfter(resp.Header.Get("Retry-After"))}
			drain(resp)
		default:
			return resp, nil
		}
		if !repeatable || attempt >= c.retries {
			return nil, rerr
		}
		if err := c.sleep(ctx, attempt, rerr.after); err != nil {
			return nil, err
		}
	}
}

// sleep waits before retry attempt+1: exponential backoff with jitter, or
// the registry's Retry-After when that is longer.
func (c *client) sleep(ctx context.Context, attempt int, after time.Duration) error {
	d := c.backoff << min(attempt, 10)
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	d = min(d, 30*time.Second)
	d = max(d, min(after, 2*time.Minute))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// transient reports whether a transport error is a dropped connection or a
// timeout, rather than a registry that cannot be reached at all.
func transient(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return false
	}
	var tlsRecord interface{ Error() string }
	if errors.As(err, &tlsRecord) && strings.Contains(err.Error(), "certificate") {
		return false
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return false
	}
	var ne net.Error
	// net.ErrClosed: the transport closed its own end after the peer
	// dropped the connection in the middle of an upload.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.EPIPE) || (errors.As(err, &ne) && ne.Timeout()) || strings.Contains(err.Error(), "connection reset")
}

// transportError says in one line why the registry could not be talked to.
func (c *client) transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("cannot reach %s: it speaks plain HTTP (use --insecure)", c.host)
	case strings.Contains(msg, "certificate"):
		return fmt.Errorf("cannot reach %s: TLS: %s (use --ca-file for a private CA)", c.host, lastPart(msg))
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		msg = oe.Err.Error()
		var se interface{ Unwrap() error }
		if errors.As(oe.Err, &se) && se.Unwrap() != nil {
			msg = se.Unwrap().Error()
		}
	}
	return fmt.Errorf("cannot reach %s: %s", c.host, msg)
}

// lastPart returns what follows the last ": " of a message.
func lastPart(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// drain reads and closes a body so the connection can be reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// ping asks GET /v2/, learning whether and how the registry wants
// authentication.
func (c *client) ping(ctx context.Context) error {
	build := newRequest(http.MethodGet, c.base+"/v2/", nil, nil)
	var resp *http.Response
	var err error
	for attempt := 0; ; attempt++ {
		var req *http.Request
		if req, err = build(ctx); err != nil {
			return err
		}
		resp, err = c.http.Do(req)
		if err == nil && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
			break
		}
		var after time.Duration
		if err == nil {
			err = statusError(resp)
			after = retryAfter(resp.Header.Get("Retry-After"))
			drain(resp)
		} else if ctx.Err() != nil {
			return ctx.Err()
		} else if !transient(err) {
			return c.transportError(err)
		} else {
			err = c.transportError(err)
		}
		if attempt >= c.retries {
			return fmt.Errorf("%s: %w", c.host, err)
		}
		if err := c.sleep(ctx, attempt, after); err != nil {
			return err
		}
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		chs := ParseChallenges(resp.Header)
		c.mu.Lock()
		defer c.mu.Unlock()
		if ch := pick(chs); ch != nil {
			c.challenge = ch
			return nil
		}
		return fmt.Errorf("%s: 401 Unauthorized with no usable WWW-Authenticate challenge", c.host)
	default:
		return fmt.Errorf("%s does not look like a registry: GET /v2/ answered %s", c.host, resp.Status)
	}
}

// login checks the credentials before any upload, so that wrong ones fail
// at once: it fetches the bearer token for scopes, or sends the basic
// credentials to /v2/.
func (c *client) login(ctx context.Context, scopes []string) error {
	c.mu.Lock()
	ch := c.challenge
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	if ch.Scheme == "basic" && c.creds.Anonymous() {
		return c.authError(nil)
	}
	resp, err := c.do(ctx, newRequest(http.MethodGet, c.base+"/v2/", nil, nil), scopes, true)
	if err != nil {
		return err
	}
	drain(resp)
	return nil
}

// pick chooses bearer over basic among the challenges.
func pick(chs []Challenge) *Challenge {
	for _, scheme := range []string{"bearer", "basic"} {
		for _, ch := range chs {
			if ch.Scheme == scheme {
				return &ch
			}
		}
	}
	return nil
}

// answer handles a 401: it takes the challenge it carries and, for bearer,
// fetches a token for the scopes asked plus the scope the challenge names.
func (c *client) answer(ctx context.Context, chs []Challenge, scopes []string) error {
	ch := pick(chs)
	if ch == nil {
		return fmt.Errorf("%s: 401 Unauthorized with no usable WWW-Authenticate challenge", c.host)
	}
	c.mu.Lock()
	prev := c.challenge
	c.challenge = ch
	c.mu.Unlock()
	switch ch.Scheme {
	case "basic":
		if c.creds.Anonymous() {
			return c.authError(nil)
		}
		if prev != nil && prev.Scheme == "basic" {
			return c.authError(errors.New("credentials rejected"))
		}
		return nil
	default:
		all := scopes
		if s := ch.Params["scope"]; s != "" && !slices.Contains(all, s) {
			all = append(slices.Clone(scopes), strings.Fields(s)...)
		}
		key := scopeKey(scopes)
		c.mu.Lock()
		_, had := c.tokens[key]
		c.mu.Unlock()
		if had && ch.Params["error"] != "insufficient_scope" && prev != nil && prev.Scheme == "bearer" {
			return c.authError(errors.New("token rejected"))
		}
		tok, err := c.fetchToken(ctx, ch, all)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.tokens[key] = tok
		c.mu.Unlock()
		return nil
	}
}

// authError is the one line for an authentication failure.
func (c *client) authError(why error) error {
	if c.creds.Anonymous() {
		return fmt.Errorf("%s: 401 Unauthorized: authentication required (use docker login, or --username and --password-stdin)", c.host)
	}
	return fmt.Errorf("%s: 401 Unauthorized: %v", c.host, why)
}

// scopeKey names a set of scopes in the token cache.
func scopeKey(scopes []string) string {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return strings.Join(s, " ")
}

// authorize adds the Authorization header the registry's challenge asks
// for, fetching a bearer token for the scopes when none is cached.
func (c *client) authorize(ctx context.Context, req *http.Request, scopes []string) error {
	c.mu.Lock()
	ch := c.challenge
	tok, ok := c.tokens[scopeKey(scopes)]
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	switch ch.Scheme {
	case "basic":
		if !c.creds.Anonymous() {
			req.SetBasicAuth(c.creds.Username, c.creds.Password)
		}
	case "bearer":
		if !ok {
			c.fetchMu.Lock()
			c.mu.Lock()
			tok, ok = c.tokens[scopeKey(scopes)]
			c.mu.Unlock()
			if !ok {
				var err error
				if tok, err = c.fetchToken(ctx, ch, scopes); err != nil {
					c.fetchMu.Unlock()
					return err
				}
				c.mu.Lock()
				c.tokens[scopeKey(scopes)] = tok
				c.mu.Unlock()
			}
			c.fetchMu.Unlock()
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	return nil
}

// fetchToken asks the challenge's realm for a token: GET with basic
// credentials (or none), or the OAuth2 refresh-token POST for an identity
// token.
func (c *client) fetchToken(ctx context.Context, ch *Challenge, scopes []string) (string, error) {
	realm := ch.Params["realm"]
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%s: bad token realm %q", c.host, realm)
	}
	form := url.Values{}
	if s := ch.Params["service"]; s != "" {
		form.Set("service", s)
	}
	for _, s := range scopes {
		form.Add("scope", s)
	}
	var build request
	if c.creds.IdentityToken != "" {
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", c.creds.IdentityToken)
		form.Set("client_id", "quinistry")
		build = newRequest(http.MethodPost, u.String(), []byte(form.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	} else {
		q := u.Query()
		for k, v := range form {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		build = newRequest(http.MethodGet, u.String(), nil, nil)
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := build(ctx)
		if err != nil {
			return "", err
		}
		if c.creds.IdentityToken == "" && !c.creds.Anonymous() {
			req.SetBasicAuth(c.creds.Username, c.creds.Password)
		}
		resp, err = c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if !transient(err) || attempt >= c.retries {
				return "", fmt.Errorf("token service of %s: %w", c.host, c.transportError(err))
			}
			if err := c.sleep(ctx, attempt, 0); err != nil {
				return "", err
			}
			continue
		}
		if (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) && attempt < c.retries {
			after := retryAfter(resp.Header.Get("Retry-After"))
			drain(resp)
			if err := c.sleep(ctx, attempt, after); err != nil {
				return "", err
			}
			continue
		}
		break
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		if c.creds.Anonymous() {
			return "", fmt.Errorf("%s: %s from the token service: authentication required (use docker login, or --username and --password-stdin)", c.host, resp.Status)
		}
		return "", fmt.Errorf("%s: %s from the token service: credentials rejected", c.host, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%s: token service answered %s", c.host, resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("%s: token service gave no JSON: %v", c.host, err)
	}
	if body.Token == "" {
		body.Token = body.AccessToken
	}
	if body.Token == "" {
		return "", fmt.Errorf("%s: token service gave an empty token", c.host)
	}
	return body.Token, nil
}

// statusError describes a failed response in one line, with the
// registry's error codes when it sent some.
func statusError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	var parts []string
	if json.Unmarshal(data, &body) == nil {
		for _, e := range body.Errors {
			p := e.Code
			if e.Message != "" {
				p += ": " + e.Message
			}
			parts = append(parts, p)
		}
	}
	msg := resp.Status
	if len(parts) > 0 {
		msg += " (" + strings.Join(parts, "; ") + ")"
	}
	return &StatusError{Code: resp.StatusCode, msg: strings.ReplaceAll(msg, "\n", " ")}
}

// StatusError is an unexpected answer from the registry.
type StatusError struct {
	Code int
	msg  string
}

func (e *StatusError) Error() string { return e.msg }
