package partnersim

import (
	"fmt"
	"time"
)

// The checks below restate the partner contract from docs/partners.md by
// JSON field name, independently of the client's Go types, so a renamed
// tag in the client shows up as a 400 in tests.

func validateApproval(m map[string]any) []string {
	var p []string
	p = requireStrings(p, m, "urn", "patientId", "prescriberId", "approvedBy")
	p = requireMedication(p, m)
	return requireTime(p, m, "approvedAt")
}

func validatePrescription(m map[string]any) []string {
	var p []string
	p = requireStrings(p, m, "urn", "patientId", "prescriberId", "pharmacyId")
	p = requireMedication(p, m)
	return requireTime(p, m, "sentAt")
}

// validateNotification: a notice goes to a patient (patientId) or to a
// prescriber (prescriberId), exactly one of them.
func validateNotification(m map[string]any) []string {
	p := requireStrings(nil, m, "urn", "message")
	patient, _ := m["patientId"].(string)
	prescriber, _ := m["prescriberId"].(string)
	if (patient == "") == (prescriber == "") {
		p = append(p, "exactly one of patientId and prescriberId is required")
	}
	return p
}

func validateReturn(m map[string]any) []string {
	var p []string
	p = requireStrings(p, m, "urn", "patientId", "pharmacyId")
	p = requireMedication(p, m)
	p = requireTime(p, m, "dispensedAt")
	return requireTime(p, m, "dueAt")
}

func validateAlert(m map[string]any) []string {
	p := requireStrings(nil, m, "summary")
	switch m["severity"] {
	case "info", "warning", "critical":
	default:
		p = append(p, `severity must be "info", "warning" or "critical"`)
	}
	return requireTime(p, m, "at")
}

func requireStrings(p []string, m map[string]any, fields ...string) []string {
	for _, f := range fields {
		if s, _ := m[f].(string); s == "" {
			p = append(p, f+" is required")
		}
	}
	return p
}

func requireTime(p []string, m map[string]any, field string) []string {
	s, _ := m[field].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.IsZero() {
		return append(p, field+" must be a non-zero RFC 3339 time")
	}
	return p
}

func requireMedication(p []string, m map[string]any) []string {
	med, ok := m["medication"].(map[string]any)
	if !ok {
		return append(p, "medication is required")
	}
	if s, _ := med["name"].(string); s == "" {
		p = append(p, "medication.name is required")
	}
	if q, _ := med["quantity"].(float64); q < 1 || q != float64(int64(q)) {
		p = append(p, "medication.quantity must be a positive integer")
	}
	if r, ok := med["refills"].(float64); !ok || r < 0 || r != float64(int64(r)) {
		p = append(p, fmt.Sprintf("medication.refills must be a non-negative integer, got %v", med["refills"]))
	}
	return p
}
