// promql-check: do PromQL expressions name only metrics (and labels) that a scrape of
// the autoscaler's /metrics has? It parses each expression with Prometheus' own PromQL
// parser and the scrape with the parser Prometheus uses when it scrapes
// (model/textparse), so a name counts as existing exactly when Prometheus would store a
// series under it.
//
// Usage: promql-check SCRAPE_FILE CONTENT_TYPE < expressions
// Each input line is a JSON object {"where": "...", "expr": "..."} (Grafana variables
// already substituted). One line per expression is printed: "ok - WHERE: ..." or
// "not ok - WHERE: PROBLEM"; the exit status is 1 when any expression failed.
//
// A metric exists when the scrape has a sample of it or declares its family (# TYPE),
// in which case the series names follow from the type (counter: NAME_total, histogram:
// NAME_bucket/_sum/_count, ...): a family with labels but no label values yet (say,
// zone skew before the first balance set) still exists. Label names are checked only
// against metrics that have samples, plus the labels Prometheus adds at scrape time.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
)

// Labels a scrape through the chart's ServiceMonitor (or a plain kubernetes_sd job) adds.
var targetLabels = map[string]bool{
	"job": true, "instance": true, "namespace": true, "pod": true, "service": true,
	"container": true, "endpoint": true, "node": true,
}

type scrape struct {
	series map[string]map[string]bool // series name -> label names seen (nil: declared only)
}

func seriesNames(family string, t model.MetricType) []string {
	switch t {
	case model.MetricTypeCounter:
		return []string{family + "_total"}
	case model.MetricTypeHistogram:
		return []string{family + "_bucket", family + "_sum", family + "_count"}
	case model.MetricTypeGaugeHistogram:
		return []string{family + "_bucket", family + "_gsum", family + "_gcount"}
	case model.MetricTypeSummary:
		return []string{family, family + "_sum", family + "_count"}
	case model.MetricTypeInfo:
		return []string{family + "_info"}
	default:
		return []string{family}
	}
}

func readScrape(path, contentType string) (*scrape, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := textparse.New(b, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if p == nil {
		return nil, fmt.Errorf("%s: no parser for content type %q: %v", path, contentType, err)
	}
	s := &scrape{series: map[string]map[string]bool{}}
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a valid scrape: %w", path, err)
		}
		switch e {
		case textparse.EntryType:
			name, t := p.Type()
			for _, n := range seriesNames(string(name), t) {
				if _, ok := s.series[n]; !ok {
					s.series[n] = nil
				}
			}
		case textparse.EntrySeries, textparse.EntryHistogram:
			var l labels.Labels
			p.Labels(&l)
			name := l.Get(labels.MetricName)
			if s.series[name] == nil {
				s.series[name] = map[string]bool{}
			}
			l.Range(func(lb labels.Label) {
				if lb.Name != labels.MetricName {
					s.series[name][lb.Name] = true
				}
			})
		}
	}
	if len(s.series) == 0 {
		return nil, fmt.Errorf("%s: the scrape has no metrics", path)
	}
	return s, nil
}

// closest is the known name with the longest common prefix, as a hint in a failure.
func (s *scrape) closest(name string) string {
	best, bestLen := "", 0
	for n := range s.series {
		i := 0
		for i < len(n) && i < len(name) && n[i] == name[i] {
			i++
		}
		if i > bestLen || (i == bestLen && n < best) {
			best, bestLen = n, i
		}
	}
	return best
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// check returns the problems of one expression and the metric names it uses.
func (s *scrape) check(expr string) (problems []string, names []string) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{"does not parse: " + err.Error()}, nil
	}
	seen := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			if name == "" {
				problems = append(problems, fmt.Sprintf("selector %s names no metric", n))
				return nil
			}
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
			have, ok := s.series[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("metric %s is not on /metrics (closest: %s)", name, s.closest(name)))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && have != nil && !have[m.Name] && !targetLabels[m.Name] {
					problems = append(problems, fmt.Sprintf("metric %s has no label %q (it has: %s)", name, m.Name, keys(have)))
				}
			}
		case *parser.AggregateExpr:
			if n.Without || len(n.Grouping) == 0 {
				return nil
			}
			// Every `by` label must be on some metric below, unless none of them has samples.
			union, known := map[string]bool{}, true
			parser.Inspect(n.Expr, func(c parser.Node, _ []parser.Node) error {
				if vs, ok := c.(*parser.VectorSelector); ok {
					have := s.series[selectorName(vs)]
					if have == nil {
						known = false
					}
					for l := range have {
						union[l] = true
					}
				}
				return nil
			})
			for _, l := range n.Grouping {
				if known && !union[l] && !targetLabels[l] {
					problems = append(problems, fmt.Sprintf("groups by %q, which no metric below has (they have: %s)", l, keys(union)))
				}
			}
		}
		return nil
	})
	if len(names) == 0 && len(problems) == 0 {
		problems = append(problems, "names no metric at all")
	}
	return problems, names
}

func keys(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: promql-check SCRAPE_FILE CONTENT_TYPE < expressions (JSON lines {\"where\",\"expr\"})")
		os.Exit(2)
	}
	s, err := readScrape(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "promql-check:", err)
		os.Exit(2)
	}
	failed, count := false, 0
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var q struct{ Where, Expr string }
		if err := json.Unmarshal(in.Bytes(), &q); err != nil || q.Expr == "" {
			fmt.Fprintf(os.Stderr, "promql-check: input line %q is not {\"where\": ..., \"expr\": ...}\n", in.Text())
			os.Exit(2)
		}
		count++
		problems, names := s.check(q.Expr)
		if len(problems) > 0 {
			failed = true
			fmt.Printf("not ok - %s: %s (expr: %s)\n", q.Where, strings.Join(problems, "; "), q.Expr)
		} else {
			fmt.Printf("ok - %s: %s\n", q.Where, strings.Join(names, ", "))
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: reading expressions:", err)
		os.Exit(2)
	}
	if count == 0 {
		fmt.Fprintln(os.Stderr, "promql-check: no expressions on stdin")
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
