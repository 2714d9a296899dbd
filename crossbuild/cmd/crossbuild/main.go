// Command crossbuild cross-compiles quinistry for each platform into a
// directory, named as the server's sibling discovery expects. It is what
// scripts/build.sh runs.
//
//	crossbuild [-out dist] [-platforms "linux/amd64 linux/arm64"]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/quinistry/quinistry/crossbuild"
)

func main() {
	out := flag.String("out", "dist", "output directory")
	platforms := flag.String("platforms", crossbuild.Join(crossbuild.DefaultPlatforms), "platforms to build, separated by spaces or commas")
	pkg := flag.String("package", "./cmd/quinistry", "main package to build")
	flag.Parse()
	ps, err := crossbuild.ParsePlatforms(*platforms)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crossbuild:", err)
		os.Exit(2)
	}
	paths, err := crossbuild.Build(context.Background(), crossbuild.BuildOptions{
		ModuleDir: ".", Package: *pkg, OutDir: *out, Platforms: ps,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crossbuild:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}
