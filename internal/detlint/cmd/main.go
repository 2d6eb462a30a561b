// Command detlint checks the directories given (each one package) and exits 1
// on any determinism leak.
package main

import (
	"fmt"
	"os"

	"github.com/zzim/zzim/internal/detlint"
)

func main() {
	bad := 0
	for _, dir := range os.Args[1:] {
		fs, err := detlint.Dir(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "detlint:", err)
			os.Exit(2)
		}
		for _, f := range fs {
			fmt.Println(f)
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "detlint: %d determinism leak(s)\n", bad)
		os.Exit(1)
	}
}
