package push

import (
	"net/http"
	"strings"
)

// Challenge is a parsed WWW-Authenticate header: a scheme (basic or bearer,
// lower case) and its parameters (realm, service, scope, error).
type Challenge struct {
	Scheme string
	Params map[string]string
}

// ParseChallenges reads every WWW-Authenticate header of a response.
// Parameter values may be quoted, and quoted values may hold commas.
func ParseChallenges(h http.Header) []Challenge {
	var out []Challenge
	for _, v := range h.Values("WWW-Authenticate") {
		out = append(out, parseChallenge(v)...)
	}
	return out
}

// parseChallenge parses one header value, which may hold several challenges.
func parseChallenge(s string) []Challenge {
	var out []Challenge
	var cur *Challenge
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		// a token: a scheme, or a parameter name followed by =
		i := strings.IndexAny(s, " \t=,")
		if i < 0 {
			i = len(s)
		}
		tok := s[:i]
		s = strings.TrimLeft(s[i:], " \t")
		if !strings.HasPrefix(s, "=") {
			out = append(out, Challenge{Scheme: strings.ToLower(tok), Params: map[string]string{}})
			cur = &out[len(out)-1]
			continue
		}
		s = strings.TrimLeft(s[1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			j := 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			val = b.String()
			s = s[min(j+1, len(s)):]
		} else {
			j := strings.IndexAny(s, ", \t")
			if j < 0 {
				j = len(s)
			}
			val, s = s[:j], s[j:]
		}
		if cur != nil {
			cur.Params[strings.ToLower(tok)] = val
		}
	}
	return out
}
