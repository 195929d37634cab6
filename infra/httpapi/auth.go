package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// DefaultAlgorithms are the JWS algorithms accepted unless configured:
// every asymmetric one. Symmetric (HS*) algorithms are never accepted (a
// JWKS publishes public keys), nor is "none".
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Defaults of JWTConfig.
const (
	DefaultRolesClaim         = "roles"
	DefaultPharmacyClaim      = "pharmacy_id"
	DefaultLeeway             = 30 * time.Second
	DefaultJWKSRefresh        = time.Hour
	DefaultUnknownKeyInterval = time.Minute
	DefaultJWKSTimeout        = 10 * time.Second
)

// JWTConfig says how bearer JWTs are verified: against which keys, for
// which issuer and audience, and where their roles are.
type JWTConfig struct {
	// JWKSURL is where the identity provider publishes its JSON Web Key Set
	// (https://…/jwks.json, or its OIDC jwks_uri). It is fetched at start,
	// every JWKSRefresh, and when a token names a key id it does not hold,
	// at most once per UnknownKeyInterval. A failed fetch is logged and
	// retried so; until one succeeds, tokens are refused.
	JWKSURL string
	// JWKSFile is a JSON Web Key Set file, read once at start (restart to
	// rotate its keys). Exactly one of JWKSURL and JWKSFile is set.
	JWKSFile string
	// Issuer and Audience must equal the token's iss and one of its aud.
	Issuer, Audience string
	// Algorithms the token's alg must be one of; default DefaultAlgorithms.
	// Only asymmetric algorithms are allowed.
	Algorithms []string
	// RolesClaim names the claim holding the caller's roles: a string (roles
	// separated by spaces) or an array of strings. A name that is a
	// top-level claim of the token is that claim (https://rx.example.com/roles);
	// otherwise a dotted name reaches into objects (realm_access.roles).
	// Default DefaultRolesClaim.
	RolesClaim string
	// PharmacyClaim names the string claim holding a pharmacy caller's
	// pharmacy id, found as RolesClaim is; default DefaultPharmacyClaim.
	PharmacyClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat; default
	// DefaultLeeway.
	Leeway time.Duration
	// JWKSRefresh, UnknownKeyInterval and JWKSTimeout (of one fetch) bound
	// the fetches of JWKSURL; defaults DefaultJWKSRefresh,
	// DefaultUnknownKeyInterval and DefaultJWKSTimeout.
	JWKSRefresh, UnknownKeyInterval, JWKSTimeout time.Duration
	// HTTPClient fetches JWKSURL; default one with JWKSTimeout.
	HTTPClient *http.Client
}

// AuthConfig says which bearer tokens an Authenticator accepts: JWTs,
// the static token, or both. At least one.
type AuthConfig struct {
	// JWT, if set, verifies bearer JWTs.
	JWT *JWTConfig
	// StaticToken, if set, is a shared bearer token that authenticates its
	// holder as StaticSubject with StaticRole: for local runs and demos,
	// where no identity provider runs. Its holder is one anonymous caller:
	// production deployments leave it unset.
	StaticToken string
	// StaticRole is the static token's role; default RoleOperator.
	StaticRole Role
	Logger     *slog.Logger     // default slog.Default()
	Now        func() time.Time // the clock tokens are checked against; default time.Now
}

// Errors of Authenticate.
var (
	// ErrUnauthenticated: no bearer token, or one that is not valid (401).
	ErrUnauthenticated = errors.New("httpapi: unauthenticated")
	// ErrNoRole: a valid token holding no usable role (403).
	ErrNoRole = errors.New("httpapi: no usable role")
)

// Authenticator turns a request's bearer token into a Caller.
type Authenticator struct {
	static     [sha256.Size]byte
	hasStatic  bool
	staticRole Role
	parser     *jwt.Parser
	keys       keyfunc.Keyfunc // nil without JWT
	roles      string          // RolesClaim
	pharmacy   string          // PharmacyClaim
	stop       context.CancelFunc
	log        *slog.Logger
}

// NewAuthenticator checks cfg and, for a JWKS URL, makes the first fetch
// (a failure is logged, not returned: see JWTConfig.JWKSURL) and starts the
// refresh; Close stops it. Every problem of cfg is reported at once.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Authenticator{staticRole: cmp.Or(cfg.StaticRole, RoleOperator), log: cmp.Or(cfg.Logger, slog.Default()), stop: func() {}}
	if cfg.StaticToken != "" {
		a.static, a.hasStatic = sha256.Sum256([]byte(cfg.StaticToken)), true
	}
	if cfg.JWT == nil {
		return a, nil
	}
	j := cfg.JWT.withDefaults()
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	a.parser = jwt.NewParser(jwt.WithValidMethods(j.Algorithms), jwt.WithIssuer(j.Issuer), jwt.WithAudience(j.Audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(j.Leeway), jwt.WithTimeFunc(now))
	a.roles, a.pharmacy = j.RolesClaim, j.PharmacyClaim
	var err error
	if j.JWKSFile != "" {
		raw, rerr := os.ReadFile(j.JWKSFile)
		if rerr != nil {
			return nil, fmt.Errorf("httpapi: JWKS file: %w", rerr)
		}
		if a.keys, err = keyfunc.NewJWKSetJSON(raw); err != nil {
			return nil, fmt.Errorf("httpapi: JWKS file %s: %w", j.JWKSFile, err)
		}
		keys, err := a.keys.Storage().KeyReadAll(context.Background())
		if err != nil || !slices.ContainsFunc(keys, func(k jwkset.JWK) bool { return usable(k, j.Algorithms) }) {
			return nil, fmt.Errorf("httpapi: JWKS file %s holds no usable key: none is a signing key (RSA, EC or OKP) for one of the algorithms %s",
				j.JWKSFile, strings.Join(j.Algorithms, ", "))
		}
		return a, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	client := j.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: j.JWKSTimeout}
	}
	a.keys, err = keyfunc.NewDefaultOverrideCtx(ctx, []string{j.JWKSURL}, keyfunc.Override{
		Client:      client,
		HTTPTimeout: j.JWKSTimeout,
		// The limiter's wait and the fetch share this bound: with
		// UnknownKeyInterval above it, a request never waits for the
		// limiter, it is refused at once.
		RateLimitWaitMax:  j.JWKSTimeout,
		RefreshInterval:   j.JWKSRefresh,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(j.UnknownKeyInterval), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				a.log.Error("query api: JWKS fetch failed; tokens signed by keys not yet fetched are refused", "url", redactURL(u), "err", err)
			}
		},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("httpapi: JWKS URL: %w", err)
	}
	a.stop = stop
	return a, nil
}

// usable says whether k can verify a token signed with one of algs: a
// public key of a type those algorithms use, not marked for encryption, its
// alg (if set) among them. A symmetric (oct) key never is.
func usable(k jwkset.JWK, algs []string) bool {
	m := k.Marshal()
	if m.USE == jwkset.UseEnc {
		return false
	}
	prefixes := map[jwkset.KTY][]string{jwkset.KtyRSA: {"RS", "PS"}, jwkset.KtyEC: {"ES"}, jwkset.KtyOKP: {"EdDSA"}}[m.KTY]
	return slices.ContainsFunc(algs, func(alg string) bool {
		fits := slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(alg, p) })
		return fits && (m.ALG == "" || string(m.ALG) == alg)
	})
}

// Validate reports every problem of cfg at once, reading and fetching
// nothing.
func (cfg AuthConfig) Validate() error {
	if cfg.JWT == nil && cfg.StaticToken == "" {
		return errors.New("httpapi: no way to authenticate callers: configure a JWKS (URL or file) with its issuer and audience, or enable the static token")
	}
	var errs []error
	if cfg.StaticToken != "" && strings.IndexFunc(cfg.StaticToken, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		errs = append(errs, errors.New("httpapi: the static token holds white space or control characters: a bearer token cannot carry them"))
	}
	if r := cmp.Or(cfg.StaticRole, RoleOperator); r != RoleAuditor && r != RoleOperator {
		errs = append(errs, fmt.Errorf("httpapi: static token role %q is not auditor or operator", r))
	}
	if cfg.JWT != nil {
		errs = append(errs, cfg.JWT.withDefaults().validate())
	}
	return errors.Join(errs...)
}

// withDefaults fills j's zero fields with the defaults.
func (j JWTConfig) withDefaults() JWTConfig {
	if len(j.Algorithms) == 0 {
		j.Algorithms = DefaultAlgorithms
	}
	j.RolesClaim, j.PharmacyClaim = cmp.Or(j.RolesClaim, DefaultRolesClaim), cmp.Or(j.PharmacyClaim, DefaultPharmacyClaim)
	j.Leeway = cmp.Or(j.Leeway, DefaultLeeway)
	j.JWKSRefresh, j.UnknownKeyInterval = cmp.Or(j.JWKSRefresh, DefaultJWKSRefresh), cmp.Or(j.UnknownKeyInterval, DefaultUnknownKeyInterval)
	j.JWKSTimeout = cmp.Or(j.JWKSTimeout, DefaultJWKSTimeout)
	return j
}

// validate reports every problem of j, defaults filled, at once.
func (j JWTConfig) validate() error {
	var errs []error
	if (j.JWKSURL == "") == (j.JWKSFile == "") {
		errs = append(errs, errors.New("httpapi: JWT: set exactly one of the JWKS URL and the JWKS file"))
	}
	if j.JWKSURL != "" {
		if u, err := url.Parse(j.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("httpapi: JWT: JWKS URL %q is not an http(s) URL", redactURL(j.JWKSURL)))
		}
	}
	if j.Issuer == "" {
		errs = append(errs, errors.New("httpapi: JWT: the issuer is required"))
	}
	if j.Audience == "" {
		errs = append(errs, errors.New("httpapi: JWT: the audience is required"))
	}
	for _, alg := range j.Algorithms {
		if !slices.Contains(DefaultAlgorithms, alg) {
			errs = append(errs, fmt.Errorf("httpapi: JWT: algorithm %q is not allowed (one of %s)", alg, strings.Join(DefaultAlgorithms, ", ")))
		}
	}
	if j.Leeway < 0 || j.JWKSRefresh < 0 || j.UnknownKeyInterval < 0 || j.JWKSTimeout < 0 {
		errs = append(errs, errors.New("httpapi: JWT: leeway and JWKS intervals must not be negative"))
	}
	for _, c := range []string{j.RolesClaim, j.PharmacyClaim} {
		if slices.Contains(strings.Split(c, "."), "") {
			errs = append(errs, fmt.Errorf("httpapi: JWT: claim name %q has an empty part", c))
		}
	}
	return errors.Join(errs...)
}

// redactURL drops a URL's user info and query, which may hold secrets.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// Close stops the JWKS refresh.
func (a *Authenticator) Close() { a.stop() }

// Authenticate returns r's caller. Errors: ErrUnauthenticated (no bearer
// token, or not valid: a bad signature, an algorithm not allowed or none,
// another issuer or audience, expired or not yet valid, no sub) and
// ErrNoRole (a valid token without a usable role, see callerOf; the
// Caller's Subject is then set). The cause is in the error's text, never
// the token.
func (a *Authenticator) Authenticate(r *http.Request) (Caller, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Caller{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	if a.hasStatic {
		// Both sides hashed: the comparison takes the same time whatever
		// the length.
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], a.static[:]) == 1 {
			return Caller{Subject: StaticSubject, Role: a.staticRole}, nil
		}
	}
	if a.keys == nil {
		return Caller{}, fmt.Errorf("%w: not the static token", ErrUnauthenticated)
	}
	claims := jwt.MapClaims{}
	keyOf := a.keys.KeyfuncCtx(r.Context())
	if _, err := a.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		// RFC 7515 §4.1.11: we understand no extension, so a token
		// naming any as critical is refused.
		if crit, ok := t.Header["crit"]; ok {
			return nil, fmt.Errorf("the header's crit %s names extensions this API does not understand", clip(fmt.Sprint(crit)))
		}
		return keyOf(t)
	}); err != nil {
		return Caller{}, fmt.Errorf("%w: %s", ErrUnauthenticated, clipText(err.Error()))
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return Caller{}, fmt.Errorf("%w: the token has no sub", ErrUnauthenticated)
	}
	return a.callerOf(sub, claims)
}

// callerOf gives a token's caller its role: operator if its roles include
// operator, else auditor if they include auditor, else pharmacy if they
// include pharmacy and the pharmacy claim is a non-empty string. A token
// holding pharmacy beside auditor or operator is refused (ErrNoRole), as is
// one with none of the three: roles the API does not know are ignored.
func (a *Authenticator) callerOf(sub string, claims jwt.MapClaims) (Caller, error) {
	var roles []string
	switch v := claim(claims, a.roles).(type) {
	case string:
		roles = strings.Fields(v)
	case []any:
		for _, r := range v {
			if s, ok := r.(string); ok {
				roles = append(roles, s)
			}
		}
	}
	has := func(r Role) bool { return slices.Contains(roles, string(r)) }
	c := Caller{Subject: sub}
	switch {
	case has(RolePharmacy) && (has(RoleOperator) || has(RoleAuditor)):
		return c, fmt.Errorf("%w: the token holds the pharmacy role beside auditor or operator", ErrNoRole)
	case has(RoleOperator):
		c.Role = RoleOperator
	case has(RoleAuditor):
		c.Role = RoleAuditor
	case has(RolePharmacy):
		ph, _ := claim(claims, a.pharmacy).(string)
		if ph == "" {
			return c, fmt.Errorf("%w: the pharmacy role without a pharmacy claim %q", ErrNoRole, a.pharmacy)
		}
		c.Role, c.PharmacyID = RolePharmacy, ph
	default:
		return c, fmt.Errorf("%w: claim %q holds none of pharmacy, auditor, operator", ErrNoRole, a.roles)
	}
	return c, nil
}

// claim is the claim named name: the top-level claim of that exact name
// if there is one (https://rx.example.com/roles), else the dotted path
// followed through nested objects (realm_access.roles); nil if absent.
func claim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var v any = claims
	for _, part := range strings.Split(name, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[part]
	}
	return v
}

// Bounds of attacker-controlled text in logs and errors, in bytes.
const (
	clipValue = 64  // one value: a kid, an alg, a subject
	clipError = 256 // an error's text, which may quote such values
)

// clip is s %q-quoted, cut to its first clipValue bytes with
// "…(N bytes)" when longer: for a value a caller chose.
func clip(s string) string {
	if len(s) <= clipValue {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:clipValue], "")) + fmt.Sprintf("…(%d bytes)", len(s))
}

// clipText is s cut to its first clipError bytes with "…(N bytes)" when
// longer: for a library's error text, which may quote a caller's values.
func clipText(s string) string {
	if len(s) <= clipError {
		return s
	}
	return strings.ToValidUTF8(s[:clipError], "") + fmt.Sprintf("…(%d bytes)", len(s))
}
