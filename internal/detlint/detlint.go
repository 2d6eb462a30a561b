// Package detlint finds determinism leaks in the packages the simulator runs:
// wall-clock reads, global randomness, goroutines and select statements.
// Service state machines take time, randomness and concurrency only from
// their node.Env; anything else makes a simulator run unreproducible.
//
// A line may opt out with a comment containing "determinism-ok: why".
package detlint

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Finding is one leak.
type Finding struct {
	Pos  token.Position
	What string
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s", f.Pos, f.What) }

// forbidden calls by import path, then function name.
var forbidden = map[string]map[string]bool{
	"time": {"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "Tick": true,
		"NewTimer": true, "NewTicker": true, "AfterFunc": true},
	"math/rand":    nil, // nil: every package-level function (the global source)
	"math/rand/v2": nil,
	"crypto/rand":  nil,
}

// constructors of seeded generators are fine: they do not touch the global source.
var allowedRand = map[string]bool{"New": true, "NewPCG": true, "NewSource": true, "NewChaCha8": true, "NewZipf": true}

// Dir checks the non-test Go files of one directory.
func Dir(dir string) ([]Finding, error) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		path := filepath.Join(dir, name)
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		out = append(out, file(fset, f)...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pos.Filename != out[j].Pos.Filename {
			return out[i].Pos.Filename < out[j].Pos.Filename
		}
		return out[i].Pos.Line < out[j].Pos.Line
	})
	return out, nil
}

func file(fset *token.FileSet, f *ast.File) []Finding {
	imports := map[string]string{} // local name → path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		name := filepath.Base(path)
		if path == "math/rand/v2" {
			name = "rand"
		}
		if imp.Name != nil {
			name = imp.Name.Name
		}
		imports[name] = path
	}
	optOut := map[int]bool{}
	for _, cg := range f.Comments {
		if strings.Contains(cg.Text(), "determinism-ok:") {
			optOut[fset.Position(cg.End()).Line] = true
		}
	}
	var out []Finding
	add := func(pos token.Pos, what string) {
		p := fset.Position(pos)
		if !optOut[p.Line] {
			out = append(out, Finding{Pos: p, What: what})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			add(n.Pos(), "go statement: services must not start goroutines")
		case *ast.SelectStmt:
			add(n.Pos(), "select statement: services must not block on channels")
		case *ast.SelectorExpr:
			id, ok := n.X.(*ast.Ident)
			if !ok || id.Obj != nil {
				return true
			}
			path, ok := imports[id.Name]
			if !ok {
				return true
			}
			funcs, listed := forbidden[path]
			if !listed {
				return true
			}
			if funcs == nil && !allowedRand[n.Sel.Name] && isFunc(n.Sel.Name) {
				add(n.Pos(), fmt.Sprintf("%s.%s: global randomness; use env.Rand()", path, n.Sel.Name))
			} else if funcs[n.Sel.Name] {
				add(n.Pos(), fmt.Sprintf("%s.%s: wall clock; use env.Now() and env.After()", path, n.Sel.Name))
			}
		}
		return true
	})
	return out
}

// isFunc: exported identifiers starting with an upper-case letter that are
// not types we allow (rand.Rand, rand.Source used as types are fine).
func isFunc(name string) bool {
	switch name {
	case "Rand", "Source", "PCG", "ChaCha8", "Zipf", "Reader":
		return name == "Reader"
	}
	return name != "" && name[0] >= 'A' && name[0] <= 'Z'
}
