// Command images builds a single-layer OCI image-layout tarball from static
// binaries, with no Docker and no registry, so that the local cluster's containerd
// can import it with `ctr -n k8s.io images import`.
//
// The layer holds the binaries, an /etc/passwd and /etc/group naming the non-root
// user, and an empty /tmp. The config names the entrypoint and the user; the index
// carries the io.containerd.image.name annotation containerd uses as the image name.
//
// Usage:
//
//	go run ./hack/images -name docker.io/library/cometd-broker:dev \
//	    -file bin/broker=/broker -entrypoint /broker -o bin/images/broker.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var (
		files fileList
		spec  Spec
		out   string
		entry string
		args  string
	)
	flag.StringVar(&spec.Name, "name", "", "full image reference, e.g. docker.io/library/cometd-broker:dev (required)")
	flag.Var(&files, "file", "HOST=IMAGE_PATH: a file to place in the image, mode kept (repeatable)")
	flag.StringVar(&entry, "entrypoint", "", "the entrypoint, space-separated (required)")
	flag.StringVar(&args, "cmd", "", "default arguments, space-separated")
	flag.IntVar(&spec.UID, "uid", 65532, "the numeric user and group the image runs as (must not be 0)")
	flag.StringVar(&spec.Arch, "arch", "amd64", "the image's architecture")
	flag.StringVar(&out, "o", "", "output tarball (required)")
	flag.Parse()

	if spec.Name == "" || entry == "" || out == "" || len(files) == 0 {
		fmt.Fprintln(os.Stderr, "images: -name, -entrypoint, -o and at least one -file are required")
		flag.Usage()
		os.Exit(2)
	}
	spec.Entrypoint = strings.Fields(entry)
	spec.Cmd = strings.Fields(args)
	for _, f := range files {
		host, inImage, ok := strings.Cut(f, "=")
		if !ok || host == "" || !strings.HasPrefix(inImage, "/") {
			fmt.Fprintf(os.Stderr, "images: bad -file %q: want HOST=/path/in/image\n", f)
			os.Exit(2)
		}
		spec.Files = append(spec.Files, File{Host: host, Path: inImage})
	}
	if err := Write(out, spec); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}
