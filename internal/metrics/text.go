package metrics

import (
	"bufio"
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// contentType is the text format's, as promhttp names it; the escaping
// parameter is added per request.
const contentType = "text/plain; version=0.0.4; charset=utf-8; escaping="

// WriteText writes fams in the text exposition format, as
// client_golang's expfmt.MetricFamilyToText does.
func WriteText(w io.Writer, fams []Family) error {
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		writeFamily(bw, f)
	}
	return bw.Flush()
}

func writeFamily(w *bufio.Writer, f Family) {
	if f.Help != "" {
		w.WriteString("# HELP " + f.Name + " ")
		w.WriteString(helpEscaper.Replace(f.Help))
		w.WriteByte('\n')
	}
	w.WriteString("# TYPE " + f.Name + " " + string(f.Type) + "\n")
	for _, m := range f.Metrics {
		switch f.Type {
		case HistogramType:
			inf := false
			for _, b := range m.Buckets {
				writeSample(w, f.Name+"_bucket", m.Labels, "le", b.UpperBound, float64(b.Count))
				inf = inf || math.IsInf(b.UpperBound, 1)
			}
			if !inf {
				writeSample(w, f.Name+"_bucket", m.Labels, "le", math.Inf(1), float64(m.Count))
			}
			writeSample(w, f.Name+"_sum", m.Labels, "", 0, m.Sum)
			writeSample(w, f.Name+"_count", m.Labels, "", 0, float64(m.Count))
		case SummaryType:
			for _, q := range m.Quantiles {
				writeSample(w, f.Name, m.Labels, "quantile", q.Quantile, q.Value)
			}
			writeSample(w, f.Name+"_sum", m.Labels, "", 0, m.Sum)
			writeSample(w, f.Name+"_count", m.Labels, "", 0, float64(m.Count))
		default:
			writeSample(w, f.Name, m.Labels, "", 0, m.Value)
		}
	}
}

// writeSample writes one line; extra, when not "", is a last label
// (le, quantile) whose value is a number.
func writeSample(w *bufio.Writer, name string, labels []Label, extra string, extraValue, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l.Name + `="`)
			w.WriteString(labelEscaper.Replace(l.Value))
			w.WriteByte('"')
		}
		if extra != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(extra + `="` + formatFloat(extraValue) + `"`)
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// formatFloat writes v as the text format does: shortest 'g', and
// +Inf, -Inf, NaN spelled so.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves r's families in the text format, gzip-compressed when
// the client accepts it. It offers no protobuf and no OpenMetrics (which
// promhttp, as serve used it, did not offer either... except protobuf,
// which only a Prometheus scraping native histograms asks for first, and
// kubetrail exports none; the text format serves it the same series).
func Handler(r *Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType+escaping(req.Header.Get("Accept")))
		h.Add("Vary", "Accept")
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = w
		if acceptsGzip(req.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		WriteText(out, r.Gather())
	})
}

// accept is one entry of an Accept header.
type accept struct {
	typ, subtype string
	q            float64
	params       map[string]string
}

// parseAccept reads an Accept header as goautoneg does: entries sorted by
// q, then by specificity (type/subtype before type/* before */*).
func parseAccept(header string) []accept {
	var as []accept
	for _, part := range strings.Split(header, ",") {
		fields := strings.Split(part, ";")
		mt := strings.TrimSpace(fields[0])
		typ, sub, ok := strings.Cut(mt, "/")
		if !ok {
			if mt != "*" {
				continue
			}
			typ, sub = "*", "*"
		}
		a := accept{typ: typ, subtype: sub, q: 1, params: map[string]string{}}
		for _, p := range fields[1:] {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok {
				continue
			}
			if k == "q" {
				a.q, _ = strconv.ParseFloat(v, 64)
				continue
			}
			a.params[k] = v
		}
		as = append(as, a)
	}
	spec := func(a accept) int {
		switch {
		case a.typ == "*":
			return 0
		case a.subtype == "*":
			return 1
		}
		return 2
	}
	slices.SortStableFunc(as, func(a, b accept) int {
		if a.q != b.q {
			if a.q > b.q {
				return -1
			}
			return 1
		}
		return spec(b) - spec(a)
	})
	return as
}

// escaping is the name escaping scheme promhttp's negotiation names in
// its Content-Type: the last known escaping parameter among the Accept
// entries up to the first the text format matches, else "underscores".
// It does not change the output: every kubetrail metric name is a valid
// legacy name.
func escaping(header string) string {
	scheme := "underscores"
	for _, a := range parseAccept(header) {
		switch e := a.params["escaping"]; e {
		case "allow-utf-8", "underscores", "dots", "values":
			scheme = e
		}
		if matchesText(a) {
			break
		}
	}
	return scheme
}

// matchesText says whether a accepts text/plain version 0.0.4.
func matchesText(a accept) bool {
	if (a.typ != "*" && a.typ != "text") || (a.subtype != "*" && a.subtype != "plain") {
		return false
	}
	v := a.params["version"]
	if v == "" && a.typ == "text" && a.subtype == "plain" {
		v = "0.0.4"
	}
	return v == "0.0.4"
}

// acceptsGzip says whether an Accept-Encoding header prefers gzip to no
// compression.
func acceptsGzip(header string) bool {
	gzipQ, identityQ := -1.0, 0.0001 // identity is acceptable unless refused
	for _, part := range strings.Split(header, ",") {
		fields := strings.Split(part, ";")
		q := 1.0
		for _, p := range fields[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				q, _ = strconv.ParseFloat(v, 64)
			}
		}
		switch strings.TrimSpace(fields[0]) {
		case "gzip":
			gzipQ = q
		case "identity":
			identityQ = q
		case "*":
			if gzipQ < 0 {
				gzipQ = q
			}
		}
	}
	return gzipQ > 0 && gzipQ >= identityQ
}
