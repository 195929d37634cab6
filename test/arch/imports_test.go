// Package arch guards the layout of ARCHITECTURE.md: which top-level folder
// may import which. It reads the imports of every non-test Go file.
package arch

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "rxflow"

// rule says what the packages under a folder may import from the module,
// by folder prefix. Third-party imports are the dependency review's
// business, except for domain/, which imports the standard library only.
type rule struct {
	folder  string
	allowed []string
	stdOnly bool
}

// The table of ARCHITECTURE.md ("Where things live"), most specific first.
var rules = []rule{
	{folder: "domain", stdOnly: true},
	{folder: "events", allowed: []string{"domain"}},
	{folder: "commands", allowed: []string{"domain", "events"}},
	{folder: "projections", allowed: []string{"domain", "events"}},
	// Test kits: conformance suites and test brokers, used only by tests.
	{folder: "infra/kafka/kafkatest", allowed: []string{"infra", "standin"}},
	{folder: "infra/kafka/bustest", allowed: []string{"infra", "standin"}},
	// Adapters: anything of the product, nothing of the services or stand-ins.
	{folder: "infra", allowed: []string{"domain", "events", "commands", "projections", "infra"}},
	// The local stack composes the services with the stand-ins.
	{folder: "service/stack", allowed: []string{"domain", "events", "commands", "projections", "infra", "service", "standin"}},
	{folder: "service", allowed: []string{"domain", "events", "commands", "projections", "infra", "service"}},
	// Stand-ins: their own code, and the one Pebble opener the ledger shares,
	// so both stores get the same durability options.
	{folder: "standin", allowed: []string{"standin", "infra/pebbledb"}},
	{folder: "cmd", allowed: []string{""}},
	{folder: "test", allowed: []string{""}},
}

func ruleFor(pkg string) (rule, bool) {
	for _, r := range rules {
		if pkg == r.folder || strings.HasPrefix(pkg, r.folder+"/") {
			return r, true
		}
	}
	return rule{}, false
}

func TestImportsFollowTheLayout(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "data") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // a nested module has its own rules
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		r, ok := ruleFor(pkg)
		if !ok {
			t.Errorf("%s: folder %q has no rule; add it to the table and to ARCHITECTURE.md", path, pkg)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			target, _ := strconv.Unquote(imp.Path.Value)
			if err := r.check(target); err != "" {
				t.Errorf("%s imports %s: %s", path, target, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked: the walk missed the tree", checked)
	}
}

func (r rule) check(target string) string {
	inModule := target == module || strings.HasPrefix(target, module+"/")
	if !inModule {
		if r.stdOnly && strings.Contains(strings.SplitN(target, "/", 2)[0], ".") {
			return r.folder + "/ imports the standard library only"
		}
		return ""
	}
	dep := strings.TrimPrefix(strings.TrimPrefix(target, module), "/")
	if slices.ContainsFunc(r.allowed, func(a string) bool { return a == "" || dep == a || strings.HasPrefix(dep, a+"/") }) {
		return ""
	}
	return r.folder + "/ may import only " + strings.Join(r.allowed, ", ")
}

// The rules must be able to fail: a few imports they must refuse.
func TestRulesRefuse(t *testing.T) {
	cases := map[string]string{
		"domain":                "github.com/google/uuid",
		"events":                module + "/commands",
		"commands":              module + "/infra/eventstore",
		"projections":           module + "/infra/ledger",
		"infra/eventstore":      module + "/service/processor",
		"infra/httpapi":         module + "/standin/esdbserver",
		"service/processor":     module + "/standin/kafkabroker",
		"standin/esdbserver":    module + "/events",
		"standin/partnersim":    module + "/infra/partners",
		"infra/kafka/kafkatest": module + "/service/stack",
	}
	for pkg, target := range cases {
		r, ok := ruleFor(pkg)
		if !ok || r.check(target) == "" {
			t.Errorf("%s importing %s is allowed", pkg, target)
		}
	}
}
