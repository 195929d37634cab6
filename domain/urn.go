package domain

import (
	"fmt"
	"regexp"
)

// MaxURNLength bounds a urn, which becomes a stream name, a Kafka key and
// a path segment of the query API.
const MaxURNLength = 256

// URNGrammar is the one grammar of a prescription's urn, a subset of RFC
// 8141: "urn:", a lowercase namespace id of 2 to 32 letters, digits or
// hyphens, ":", then a namespace-specific string of RFC 3986 path
// characters without "/" and "%". It is ASCII only, so no Unicode space,
// control, format or look-alike character can enter; "urn:" and the
// namespace id are lowercase, so no two spellings name the same
// prescription; and no route segment of the query API starts with "urn:".
// asyncapi.yaml and openapi.yaml state the same pattern.
const URNGrammar = `^urn:[a-z0-9][a-z0-9-]{0,30}[a-z0-9]:[A-Za-z0-9._~!$&'()*+,;=:@-]+$`

var urnPattern = regexp.MustCompile(URNGrammar)

// ErrInvalidURN is returned by ValidateURN; match it with errors.Is.
var ErrInvalidURN = fmt.Errorf("invalid urn: want %d characters at most, matching %s", MaxURNLength, URNGrammar)

// ValidateURN checks urn against URNGrammar and MaxURNLength.
func ValidateURN(urn string) error {
	if len(urn) > MaxURNLength || !urnPattern.MatchString(urn) {
		return ErrInvalidURN
	}
	return nil
}
