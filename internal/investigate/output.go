package investigate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/kubetrail/kubetrail/internal/escape"
)

// Report is the answer of an investigation, printable as text or JSON.
type Report interface {
	// Table returns the report for a terminal; wide adds columns (and,
	// where the investigation was run with every stage, a row per event).
	Table(wide bool) *Table
	// Records returns one JSON-encodable record per row of the report.
	Records() []any
}

// Table is a report laid out for a terminal.
type Table struct {
	// Head names the columns.
	Head []string `json:"head"`
	// Rows hold one cell per column; an empty cell prints as "-".
	Rows []Row `json:"rows"`
	// Notes are printed after the rows: totals, and what flags mean.
	Notes []string `json:"notes,omitempty"`
	// Empty is printed instead of the table when there are no rows.
	Empty string `json:"empty,omitempty"`
}

// Row is one line of a table, with optional lines printed under it (a
// diff, a body), indented by four spaces.
type Row struct {
	Cells  []string `json:"cells"`
	Detail []string `json:"detail,omitempty"`
}

// Formats lists the output formats Write accepts.
var Formats = []string{"table", "wide", "json", "jsonl"}

// Write prints a report in a format: table, wide, json (an indented
// array) or jsonl (one compact record per line). The JSON formats write
// DEL, C1 and bidirectional controls as \u escapes (escape.JSON), as
// query -o json does: the values are the same, and nothing in them acts
// on a terminal.
func Write(w io.Writer, rep Report, format string) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	switch format {
	case "table", "wide":
		writeTable(bw, rep.Table(format == "wide"))
	case "json":
		recs := rep.Records()
		if recs == nil {
			recs = []any{}
		}
		enc.SetIndent("", "  ")
		if err := enc.Encode(recs); err != nil {
			return err
		}
		bw.Write(escape.JSON(buf.Bytes()))
	case "jsonl":
		for _, r := range rep.Records() {
			buf.Reset()
			if err := enc.Encode(r); err != nil {
				return err
			}
			bw.Write(escape.JSON(buf.Bytes()))
		}
	default:
		return fmt.Errorf("-o %q: want %s", format, strings.Join(Formats, ", "))
	}
	return bw.Flush()
}

// writeTable aligns the columns over all rows (detail lines do not count),
// two spaces apart, like kubectl.
func writeTable(w io.Writer, t *Table) {
	if len(t.Rows) == 0 {
		if t.Empty != "" {
			fmt.Fprintln(w, escape.Line(t.Empty))
		}
		for _, n := range t.Notes {
			fmt.Fprintln(w, escape.Line(n))
		}
		return
	}
	widths := make([]int, len(t.Head))
	measure := func(cells []string) {
		for i, c := range cells {
			if i < len(widths) {
				widths[i] = max(widths[i], utf8.RuneCountInString(cellText(c)))
			}
		}
	}
	measure(t.Head)
	for _, r := range t.Rows {
		measure(r.Cells)
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			c = cellText(c)
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.Head)
	for _, r := range t.Rows {
		line(r.Cells)
		for _, d := range r.Detail {
			fmt.Fprintln(w, strings.TrimRight("    "+escape.Line(d), " "))
		}
	}
	for _, n := range t.Notes {
		fmt.Fprintln(w, escape.Line(n))
	}
}

// cellText keeps a cell on one line, with nothing in it a terminal would
// act on (the table's cells and lines come from events, and the API's
// table from a server), and shows an empty one as "-".
func cellText(c string) string {
	if c == "" {
		return "-"
	}
	return escape.Line(c)
}

// records turns a typed slice into Records' []any.
func records[T any](rows []T) []any {
	out := make([]any, len(rows))
	for i := range rows {
		out[i] = rows[i]
	}
	return out
}
