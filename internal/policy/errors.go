package policy

import (
	"cmp"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/suggest"
)

// Error is one problem in a policy file.
type Error struct {
	// File is the policy file's name; empty when the policy was built in code.
	File string
	// Pos is where the problem is; zero when unknown.
	Pos Pos
	// Path is the field path in the API server's notation (rules[2].level);
	// empty for problems with the document as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
	// Hint says how to fix it, such as "did you mean omitStages?"; may be empty.
	Hint string
	// Ignored marks a field the API server does not know and silently
	// ignores (since 1.26): the policy still loads there, without it.
	Ignored bool
}

// Error formats the problem as FILE:LINE:COL: PATH: MSG; HINT.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Pos.Line > 0 {
		b.WriteString(e.Pos.String())
		b.WriteByte(':')
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// ErrorList is every problem found in one policy, in file order.
type ErrorList []*Error

// Error puts each problem on its own line.
func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap lets errors.As find each *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sortByPos orders problems by where they are, keeping the order of
// problems at the same place.
func (l ErrorList) sortByPos() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := cmp.Compare(a.Pos.Line, b.Pos.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Pos.Column, b.Pos.Column)
	})
}

// didYouMean returns "did you mean X?" for the candidate closest to v, or
// "" when none is close enough to be a likely typo.
func didYouMean(v string, candidates []string) string {
	if s := suggest.Closest(v, candidates); s != "" {
		return "did you mean " + s + "?"
	}
	return ""
}
