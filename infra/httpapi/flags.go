package httpapi

import (
	"errors"
	"strings"

	"rxflow/infra/config"
)

// The environment variables of the callers' settings; each has the flag
// named beside it in AuthFlags.
const (
	EnvJWKSURL            = "QUERY_API_JWKS_URL"
	EnvJWKSFile           = "QUERY_API_JWKS_FILE"
	EnvJWTIssuer          = "QUERY_API_JWT_ISSUER"
	EnvJWTAudience        = "QUERY_API_JWT_AUDIENCE"
	EnvJWTAlgorithms      = "QUERY_API_JWT_ALGORITHMS"
	EnvRolesClaim         = "QUERY_API_ROLES_CLAIM"
	EnvPharmacyClaim      = "QUERY_API_PHARMACY_CLAIM"
	EnvJWKSRefresh        = "QUERY_API_JWKS_REFRESH"
	EnvStaticTokenEnabled = "QUERY_API_STATIC_TOKEN_ENABLED"
	EnvStaticToken        = "QUERY_API_TOKEN"
)

// AuthEnv lists every environment variable AuthFlags reads.
var AuthEnv = []string{EnvJWKSURL, EnvJWKSFile, EnvJWTIssuer, EnvJWTAudience, EnvJWTAlgorithms, EnvRolesClaim,
	EnvPharmacyClaim, EnvJWKSRefresh, EnvStaticTokenEnabled, EnvStaticToken}

// AuthFlags defines the flags of the query API's callers on f, each
// defaulting to its environment variable. After f.Parse, the returned
// function gives the settings, or what goes together badly: neither a JWKS
// nor the static token, a static token given but not enabled, or enabled
// without one. AuthConfig.Validate reports the rest (a JWT setting missing
// or malformed). JWT is set when any JWKS, issuer or audience is.
func AuthFlags(f *config.Flags) func() (AuthConfig, error) {
	jwksURL := f.String("jwks-url", EnvJWKSURL, "", "URL of the identity provider's JWKS; callers present JWTs it signs")
	jwksFile := f.String("jwks-file", EnvJWKSFile, "", "JWKS file, read at start (instead of -jwks-url)")
	issuer := f.String("jwt-issuer", EnvJWTIssuer, "", "the iss every JWT must carry (required with a JWKS)")
	audience := f.String("jwt-audience", EnvJWTAudience, "", "an aud every JWT must carry (required with a JWKS)")
	algorithms := f.String("jwt-algorithms", EnvJWTAlgorithms, strings.Join(DefaultAlgorithms, ","), "comma-separated JWS algorithms accepted (asymmetric only)")
	roles := f.String("roles-claim", EnvRolesClaim, DefaultRolesClaim, "JWT claim of the caller's roles (pharmacy, auditor, operator): the top-level claim of this name if any, else dotted for a nested claim")
	pharmacy := f.String("pharmacy-claim", EnvPharmacyClaim, DefaultPharmacyClaim, "JWT claim of a pharmacy caller's pharmacy id, found as -roles-claim")
	refresh := f.EnvDuration("jwks-refresh", EnvJWKSRefresh, DefaultJWKSRefresh, "how often the JWKS URL is fetched again")
	staticOn := f.EnvBool("static-token-enabled", EnvStaticTokenEnabled, false,
		"accept the static token -token as one caller with the operator role: for local runs and demos, never in production")
	static := f.Secret("token", EnvStaticToken, "the static bearer token; needs -static-token-enabled")
	return func() (AuthConfig, error) {
		var cfg AuthConfig
		var errs []error
		switch {
		case *staticOn && strings.TrimSpace(*static) == "":
			errs = append(errs, errors.New("the static token is enabled ("+EnvStaticTokenEnabled+") but "+EnvStaticToken+" is empty or white space"))
		case !*staticOn && *static != "":
			errs = append(errs, errors.New(EnvStaticToken+" is set but the static token is not enabled: set "+EnvStaticTokenEnabled+
				"=true for a local run, or unset it and configure a JWKS"))
		case *staticOn:
			cfg.StaticToken = *static
		}
		if *jwksURL != "" || *jwksFile != "" || *issuer != "" || *audience != "" {
			cfg.JWT = &JWTConfig{JWKSURL: *jwksURL, JWKSFile: *jwksFile, Issuer: *issuer, Audience: *audience,
				Algorithms: config.List(*algorithms), RolesClaim: *roles, PharmacyClaim: *pharmacy, JWKSRefresh: *refresh}
		}
		if cfg.JWT == nil && cfg.StaticToken == "" && len(errs) == 0 {
			errs = append(errs, errors.New("the query API has no way to authenticate callers: set "+EnvJWKSURL+" (or "+EnvJWKSFile+
				") with "+EnvJWTIssuer+" and "+EnvJWTAudience+", or, for a local run, "+EnvStaticTokenEnabled+"=true with "+EnvStaticToken))
		}
		return cfg, errors.Join(errs...)
	}
}
