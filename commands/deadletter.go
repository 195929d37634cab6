package commands

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// DeadLetter is what the dead-letter topic carries: the message exactly as
// it came, whatever its bytes, inside a JSON object that is valid UTF-8 by
// construction. Text that was valid UTF-8 is also given as is, for reading.
type DeadLetter struct {
	Code  string `json:"code"`
	Error string `json:"error"`
	// Source is where the message was read: its topic, partition and offset.
	Source DeadLetterSource `json:"source"`
	// Key is the record key when it is valid UTF-8; KeyBase64 otherwise.
	Key       *string `json:"key,omitempty"`
	KeyBase64 string  `json:"keyBase64,omitempty"`
	// Headers holds the headers whose name and value are valid UTF-8;
	// InvalidHeaders the others, base64-encoded.
	Headers        map[string]string    `json:"headers,omitempty"`
	InvalidHeaders []DeadLetterBytePair `json:"invalidHeaders,omitempty"`
	// ValueBase64 is the record value, exact; Value repeats it as text when
	// it is valid UTF-8.
	ValueBase64 string  `json:"valueBase64"`
	Value       *string `json:"value,omitempty"`
	// TruncatedFrom is the value's size in bytes when only its first bytes
	// fit; the whole record stays at Source.
	TruncatedFrom  int       `json:"truncatedFrom,omitempty"`
	DeadLetteredAt time.Time `json:"deadLetteredAt"`
}

// DeadLetterSource locates the original record.
type DeadLetterSource struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// DeadLetterBytePair is a header that is not valid UTF-8, base64-encoded.
type DeadLetterBytePair struct {
	NameBase64  string `json:"nameBase64"`
	ValueBase64 string `json:"valueBase64"`
}

// NewDeadLetter describes raw, dead-lettered with code for cause at at.
// maxValueBytes > 0 bounds the copied value.
func NewDeadLetter(raw Raw, code string, cause error, at time.Time, maxValueBytes int) DeadLetter {
	d := DeadLetter{
		Code: code, Error: ValidText(cause.Error()),
		Source:         DeadLetterSource{Topic: ValidText(raw.Topic), Partition: raw.Partition, Offset: raw.Offset},
		DeadLetteredAt: at.UTC(),
	}
	if raw.Key != nil {
		if utf8.Valid(raw.Key) {
			k := string(raw.Key)
			d.Key = &k
		} else {
			d.KeyBase64 = base64.StdEncoding.EncodeToString(raw.Key)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(raw.Headers)) {
		v := raw.Headers[name]
		if utf8.ValidString(name) && utf8.ValidString(v) {
			if d.Headers == nil {
				d.Headers = map[string]string{}
			}
			d.Headers[name] = v
			continue
		}
		d.InvalidHeaders = append(d.InvalidHeaders, DeadLetterBytePair{
			NameBase64: base64.StdEncoding.EncodeToString([]byte(name)), ValueBase64: base64.StdEncoding.EncodeToString([]byte(v))})
	}
	value := raw.Value
	if maxValueBytes > 0 && len(value) > maxValueBytes {
		value, d.TruncatedFrom = value[:maxValueBytes], len(raw.Value)
	}
	d.ValueBase64 = base64.StdEncoding.EncodeToString(value)
	if utf8.Valid(value) {
		v := string(value)
		d.Value = &v
	}
	return d
}

// ValidText returns s with each invalid UTF-8 sequence replaced by U+FFFD.
func ValidText(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
