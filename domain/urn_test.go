package domain

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateURN(t *testing.T) {
	valid := []string{"urn:rx:1", "urn:rx:a-b.c_d~e", "urn:isbn:0451450523", "urn:rx:x:y@z", "urn:rx:(1)+2,3;4=5!$&'*",
		"urn:" + strings.Repeat("n", 32) + ":1", "urn:rx:" + strings.Repeat("9", MaxURNLength-7)}
	for _, u := range valid {
		if err := ValidateURN(u); err != nil {
			t.Errorf("ValidateURN(%q) = %v, want nil", u, err)
		}
	}
	invalid := []string{
		"", "stats", "rx-1", "urn:rx:", "urn::1", "urn:r:1", "urn:-rx:1", "urn:rx-:1", "urn:" + strings.Repeat("n", 33) + ":1",
		"URN:rx:1", "urn:RX:1", "Urn:rx:1", // one prescription, one spelling
		"urn:rx:1 ", " urn:rx:1", "urn:rx:a b", "urn:rx:a\u00a0b", "urn:rx:a\u200bb", "urn:rx:a\u2028b", "urn:rx:\ufeff1",
		"urn:rx:a\tb", "urn:rx:a\nb", "urn:rx:a\x00b", "urn:rx:a\x7fb", "urn:rx:é", "urn:rx:ｒｘ", "urn:rx:a\xffb",
		"urn:rx:a/b", "urn:rx:a%2Fb", "urn:rx:a?b", "urn:rx:a#b", "urn:rx:a\\b", `urn:rx:a"b`, "urn:rx:a<b",
		"urn:rx:" + strings.Repeat("9", MaxURNLength-6),
	}
	for _, u := range invalid {
		if err := ValidateURN(u); !errors.Is(err, ErrInvalidURN) {
			t.Errorf("ValidateURN(%q) = %v, want ErrInvalidURN", u, err)
		}
	}
}
