package nodeconfig

import (
	"fmt"
	"sort"
	"strings"
)

// Severity of an Issue.
type Severity int

const (
	Warning Severity = iota
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Issue is one problem found in a config file, located by line and column.
type Issue struct {
	File     string
	Line     int
	Col      int
	Severity Severity
	// Path is the logical place, e.g. "k3os.token" or "write_files[1].path".
	Path string
	Msg  string
	// Hint says how to fix it.
	Hint string
}

func (i Issue) String() string {
	var b strings.Builder
	b.WriteString(i.File)
	if i.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", i.Line, i.Col)
	}
	fmt.Fprintf(&b, ": %s: ", i.Severity)
	if i.Path != "" {
		b.WriteString(i.Path + ": ")
	}
	b.WriteString(i.Msg)
	if i.Hint != "" {
		b.WriteString(" (" + i.Hint + ")")
	}
	return b.String()
}

// Report is the list of issues found; it is an error when any issue is.
type Report []Issue

// HasErrors tells whether any issue is an error.
func (r Report) HasErrors() bool {
	for _, i := range r {
		if i.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns the report's errors alone.
func (r Report) Errors() Report {
	var out Report
	for _, i := range r {
		if i.Severity == Error {
			out = append(out, i)
		}
	}
	return out
}

// Err returns the report as an error listing every error, or nil.
func (r Report) Err() error {
	if !r.HasErrors() {
		return nil
	}
	return &ReportError{r}
}

// Sorted orders issues by file, line and column, without repeats (an
// issue of cluster.yaml shows once, not once per node).
func (r Report) Sorted() Report {
	sort.SliceStable(r, func(a, b int) bool {
		if r[a].File != r[b].File {
			return r[a].File < r[b].File
		}
		if r[a].Line != r[b].Line {
			return r[a].Line < r[b].Line
		}
		return r[a].Col < r[b].Col
	})
	out := r[:0]
	for i, is := range r {
		if i == 0 || is != r[i-1] {
			out = append(out, is)
		}
	}
	return out
}

func (r Report) String() string {
	var b strings.Builder
	for _, i := range r {
		b.WriteString(i.String() + "\n")
	}
	return b.String()
}

// ReportError carries a report with errors.
type ReportError struct{ Report Report }

func (e *ReportError) Error() string {
	n := 0
	for _, i := range e.Report {
		if i.Severity == Error {
			n++
		}
	}
	return fmt.Sprintf("%d config error(s):\n%s", n, strings.TrimRight(e.Report.String(), "\n"))
}
