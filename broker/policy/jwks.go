package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"
)

// Remote JWK Sets are fetched with github.com/MicahParks/keyfunc: once per
// URL for the life of the process (policies are reloaded, their key sets
// stay), refreshed every jwksRefresh and, at most every jwksUnknownKID, when
// a token names a kid the set lacks.
const (
	jwksRefresh    = time.Hour
	jwksUnknownKID = 5 * time.Minute
	jwksTimeout    = 10 * time.Second
)

var jwksCache = struct {
	sync.Mutex
	m map[string]keyfunc.Keyfunc
}{m: map[string]keyfunc.Keyfunc{}}

// remoteJWKS returns the key set at url, fetching it the first time. The
// first fetch must succeed, so that a wrong URL is a policy that does not
// load rather than one that refuses every token.
func remoteJWKS(url string) (JWKS, error) {
	jwksCache.Lock()
	defer jwksCache.Unlock()
	if k, ok := jwksCache.m[url]; ok {
		return k, nil
	}
	fail := false
	k, err := keyfunc.NewDefaultOverrideCtx(context.Background(), []string{url}, keyfunc.Override{
		HTTPTimeout:               jwksTimeout,
		RefreshInterval:           jwksRefresh,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(jwksUnknownKID), 1),
		NoErrorReturnFirstHTTPReq: &fail,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				slog.Default().Warn("policy: refreshing the JWK Set failed; the keys fetched before stay in use", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("policy: JWK Set %s: %w", url, err)
	}
	jwksCache.m[url] = k
	return k, nil
}
