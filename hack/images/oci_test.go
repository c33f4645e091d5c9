package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readTar returns the regular files of a tarball by name.
func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

func TestWriteLayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out", "img.tar")
	spec := Spec{Name: "docker.io/library/demo:dev", Files: []File{{Host: bin, Path: "/usr/bin/prog"}},
		Entrypoint: []string{"/usr/bin/prog"}, Cmd: []string{"--flag"}, UID: 65532}
	if err := Write(out, spec); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := readTar(t, f)
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", files["oci-layout"])
	}
	blob := func(d descriptor) []byte {
		t.Helper()
		b, ok := files[blobPath(d.Digest)]
		if !ok {
			t.Fatalf("blob %s missing", d.Digest)
		}
		if digest(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s: digest %s size %d, descriptor size %d", d.Digest, digest(b), len(b), d.Size)
		}
		return b
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if md.Annotations[AnnotationContainerdName] != spec.Name || md.Annotations[AnnotationRefName] != "dev" {
		t.Fatalf("annotations = %v", md.Annotations)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Fatalf("platform = %+v", md.Platform)
	}
	var man manifest
	if err := json.Unmarshal(blob(md), &man); err != nil {
		t.Fatal(err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(blob(man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || cfg.Config.Entrypoint[0] != "/usr/bin/prog" || cfg.Config.Cmd[0] != "--flag" {
		t.Fatalf("config = %+v", cfg.Config)
	}
	if len(man.Layers) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		t.Fatalf("layers %v, diff ids %v", man.Layers, cfg.RootFS.DiffIDs)
	}
	rootfs := readTar(t, bytes.NewReader(blob(man.Layers[0])))
	if string(rootfs["usr/bin/prog"]) != "#!binary" {
		t.Fatalf("rootfs files: %v", keys(rootfs))
	}
	if !strings.Contains(string(rootfs["etc/passwd"]), ":65532:65532:") {
		t.Fatalf("passwd = %q", rootfs["etc/passwd"])
	}

	// Same inputs, same bytes: the image is reproducible.
	again := filepath.Join(dir, "again.tar")
	if err := Write(again, spec); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same spec differ")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWriteRefusesBadSpecs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	good := func() Spec {
		return Spec{Name: "docker.io/library/demo:dev", Files: []File{{Host: bin, Path: "/prog"}}, Entrypoint: []string{"/prog"}, UID: 1000}
	}
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   string
	}{
		{"root user", func(s *Spec) { s.UID = 0 }, "non-root"},
		{"no tag", func(s *Spec) { s.Name = "demo" }, "tag"},
		{"no entrypoint", func(s *Spec) { s.Entrypoint = nil }, "entrypoint"},
		{"relative path", func(s *Spec) { s.Files[0].Path = "prog" }, "absolute"},
		{"reserved path", func(s *Spec) { s.Files[0].Path = "/etc/passwd" }, "reserved"},
		{"missing host file", func(s *Spec) { s.Files[0].Host = filepath.Join(dir, "nope") }, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			tt.mutate(&s)
			out := filepath.Join(dir, tt.name+".tar")
			err := Write(out, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Write = %v, want an error containing %q", err, tt.want)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Fatalf("a failed Write left %s behind", out)
			}
		})
	}
}
