package domain

import (
	"fmt"
	"strings"
	"time"
)

// Markdown renders the workflow table as the documentation page
// docs/workflow.md: a Mermaid state diagram and the table with its guards
// and the event each transition records.
// The page is generated from the table, never written by hand.
func (w Workflow) Markdown() string {
	var b strings.Builder
	b.WriteString("# Prescription workflow\n\n")
	b.WriteString("Generated from `domain.Prescriptions` by `go test ./domain -update`; do not edit.\n\n")
	b.WriteString("```mermaid\n" + w.Mermaid() + "```\n\n| event | from | to | guards | records |\n|---|---|---|---|---|\n")
	for _, t := range w.Transitions {
		var guards []string
		for _, g := range t.Guards {
			guards = append(guards, "`"+g.Name+"`")
		}
		from := string(t.From)
		if t.From == StatusNone {
			from = "(new)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | `%s` |\n", t.On, from, t.To, strings.Join(guards, ", "), t.Records.Event)
	}
	var final []string
	for _, f := range w.Final {
		final = append(final, string(f))
	}
	fmt.Fprintf(&b, "\nFinal states: %s; they have no exits. Failed state: %s.\n", strings.Join(final, ", "), w.FailedState)
	b.WriteString("Each transition records the domain event named in the last column (built in `domain/records.go`), stored under its stable name in `events/` (`Approved` as `PrescriptionApproved`).\n")
	b.WriteString("Any other (state, event) pair is refused with a reason code; see `domain/refusal.go`.\n")
	b.WriteString("\n## Deadlines\n\n| deadline | state | default | when it passes |\n|---|---|---|---|\n")
	for _, d := range w.Deadlines {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", d.Name, d.In, Days(d.After), d.Action)
	}
	fmt.Fprintf(&b, "\nA deadline starts with the event that enters its state and is cancelled by the transition that leaves it. "+
		"When it passes, `%s` records `DeadlinePassed` in the stream (no state change): the prescription may still take the transition it waited for. "+
		"A `%s` that comes after the transition is refused (`%s`); one for a deadline that already passed for that entry into the state (`%s`), "+
		"or whose due time is more than %v ahead of the processor's clock or before the entry into the state (`%s`), is refused too. "+
		"The durations are defaults; a deployment sets its own (README, \"Deadlines\").\n",
		RecordDeadline, RecordDeadline, ReasonDeadlineCancelled, ReasonDeadlineAlreadyPassed, DeadlineClockSkew, ReasonDeadlineNotDue)
	return b.String()
}

// Days writes d in days when it is a whole number of them ("10d"), in
// hours when it is a whole number of those ("4h"), else as time.Duration
// does ("90m0s").
func Days(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// Mermaid renders the workflow table as a Mermaid state diagram
// (stateDiagram-v2), one line per transition, final state and deadline
// note, each ending in a newline: the diagram of docs/workflow.md and of
// the console.
func (w Workflow) Mermaid() string {
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	for _, t := range w.Transitions {
		from := "[*]"
		if t.From != StatusNone {
			from = string(t.From)
		}
		fmt.Fprintf(&b, "    %s --> %s: %s\n", from, t.To, t.On)
	}
	for _, f := range w.Final {
		fmt.Fprintf(&b, "    %s --> [*]\n", f)
	}
	for _, d := range w.Deadlines {
		fmt.Fprintf(&b, "    note right of %s: deadline %s after %s, then %s\n", d.In, d.Name, Days(d.After), d.Action)
	}
	return b.String()
}
