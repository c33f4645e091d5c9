package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// originPattern is one entry of Config.AllowedOrigins: an exact origin
// ("https://app.example.org"), a pattern whose host starts with "*." and
// matches any subdomain ("https://*.example.org" matches
// "https://a.b.example.org", not "https://example.org"), or "*".
type originPattern struct {
	scheme string // "http" or "https"
	host   string // lower case; for a wildcard, the suffix after "*"
	port   string // explicit or the scheme's default
	wild   bool
}

// origins is the compiled Config.AllowedOrigins.
type origins struct {
	patterns []originPattern
	any      bool // "*" is listed
}

func compileOrigins(list []string) (origins, error) {
	var o origins
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if s == "*" {
			o.any = true
			continue
		}
		wild := false
		if i := strings.Index(s, "://*."); i >= 0 {
			wild = true
			s = s[:i+3] + "wildcard" + s[i+4:] // parse the rest as a host name
		}
		p, ok := parseOrigin(s)
		if !ok {
			return origins{}, fmt.Errorf("server: allowed origin %q is not scheme://host[:port] or scheme://*.domain[:port]", s)
		}
		if wild {
			p.wild = true
			p.host = strings.TrimPrefix(p.host, "wildcard") // ".example.org"
			if strings.Count(p.host, ".") < 2 {
				return origins{}, fmt.Errorf("server: allowed origin pattern %q must name a domain of at least two labels after *.", s)
			}
		}
		o.patterns = append(o.patterns, p)
	}
	return o, nil
}

// parseOrigin parses a serialized origin (scheme://host[:port], no path,
// user or query); "null" and anything else is not one.
func parseOrigin(s string) (originPattern, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") || u.Host == "" {
		return originPattern{}, false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme != "http" && scheme != "https":
		return originPattern{}, false
	case port == "" && scheme == "http":
		port = "80"
	case port == "":
		port = "443"
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return originPattern{}, false
	}
	return originPattern{scheme: scheme, host: host, port: port}, true
}

// match reports whether origin, a serialized origin, is listed by pattern
// (not by "*").
func (o *origins) match(origin string) bool {
	if len(o.patterns) == 0 {
		return false
	}
	c, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for _, p := range o.patterns {
		if p.scheme != c.scheme || p.port != c.port {
			continue
		}
		if p.wild {
			if strings.HasSuffix(c.host, p.host) && len(c.host) > len(p.host) && c.host[0] != '.' {
				return true
			}
		} else if p.host == c.host {
			return true
		}
	}
	return false
}

// checkOrigin decides whether a websocket upgrade may proceed. A request
// without an Origin header is not from a browser and is allowed. A browser's
// must come from a listed origin (or any, with "*"), or be same-origin on a
// Host that is an IP address: a same-origin check against a host name would
// pass a DNS-rebinding page (its Origin and Host both carry the attacker's
// name, which resolves to the broker), so a broker reached by name lists its
// origins. "localhost" counts as an address: no page elsewhere can make a
// browser send it as Host.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	return s.originAllowed(origin, r)
}

// originAllowed is checkOrigin for a page origin known to be present.
func (s *Server) originAllowed(origin string, r *http.Request) bool {
	if s.origins.any || s.origins.match(origin) {
		return true
	}
	c, ok := parseOrigin(origin)
	if !ok {
		return false // "null", file: and the like
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	if port == "" {
		port = map[bool]string{true: "443", false: "80"}[r.TLS != nil]
	}
	if strings.EqualFold(host, "localhost") {
		return strings.EqualFold(c.host, "localhost") && c.port == port
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return false // a name: only listed origins
	}
	oip, err := netip.ParseAddr(strings.Trim(c.host, "[]"))
	return err == nil && oip == ip && c.port == port
}
