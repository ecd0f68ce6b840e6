package test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageDocumented fails for a package of the repository without
// a package doc comment, and checks that domain packages never import the
// HTTP layer (internal/server), so imports flow one way.
func TestEveryPackageDocumented(t *testing.T) {
	root := ".."
	dirs := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range dirs {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, nil, parser.ParseComments|parser.ImportsOnly)
		if err != nil {
			t.Fatalf("parse %s: %v", dir, err)
		}
		for name, pkg := range pkgs {
			documented := false
			for path, f := range pkg.Files {
				if f.Doc != nil && !strings.HasSuffix(path, "_test.go") || f.Doc != nil && strings.HasSuffix(name, "test") {
					documented = true
				}
				domain := strings.Contains(dir, "internal/") && !strings.Contains(dir, "internal/server") && !strings.Contains(dir, "internal/loadgen")
				for _, imp := range f.Imports {
					if domain && strings.Contains(imp.Path.Value, "/internal/server") {
						t.Errorf("%s imports the HTTP layer (%s)", path, imp.Path.Value)
					}
				}
			}
			if !documented && !strings.HasSuffix(name, "_test") {
				t.Errorf("package %s in %s has no package doc comment", name, dir)
			}
		}
	}
}
