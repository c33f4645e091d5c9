package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// OCI media types and annotations used by the image layout.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"

	// AnnotationContainerdName is the index annotation `ctr images import` names
	// the image by.
	AnnotationContainerdName = "io.containerd.image.name"
	// AnnotationRefName is the standard OCI reference-name annotation (the tag).
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// epoch is the fixed timestamp of every entry, so that the same inputs give the
// same digests.
var epoch = time.Unix(0, 0).UTC()

// File is one host file copied into the image.
type File struct {
	// Host is the path of the file on this machine.
	Host string
	// Path is its absolute path inside the image. Its mode is kept.
	Path string
}

// Spec describes an image. The zero UID is refused: images run as non-root.
type Spec struct {
	// Name is the full reference containerd stores the image under, e.g.
	// docker.io/library/cometd-broker:dev (what the kubelet asks for when a pod
	// says cometd-broker:dev).
	Name string
	// Files are placed in the single layer, after /etc/passwd, /etc/group and /tmp.
	Files []File
	// Entrypoint and Cmd become the config's Entrypoint and Cmd. Cmd may be empty.
	Entrypoint, Cmd []string
	// UID is the numeric user and group of the image.
	UID int
	// Arch is the GOARCH-style architecture; empty means amd64.
	Arch string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	Created      time.Time `json:"created"`
	Architecture string    `json:"architecture"`
	OS           string    `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd,omitempty"`
		Env        []string          `json:"Env"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// Validate reports what is wrong with s, or nil.
func (s Spec) Validate() error {
	var errs []error
	if s.Name == "" || strings.ContainsAny(s.Name, " \t\n") || !strings.Contains(s.Name, ":") {
		errs = append(errs, fmt.Errorf("name %q: want a full reference with a tag, e.g. docker.io/library/x:dev", s.Name))
	}
	if len(s.Entrypoint) == 0 {
		errs = append(errs, errors.New("entrypoint is empty"))
	}
	if s.UID <= 0 {
		errs = append(errs, fmt.Errorf("uid %d: images must run as a non-root user", s.UID))
	}
	if len(s.Files) == 0 {
		errs = append(errs, errors.New("no files"))
	}
	seen := map[string]bool{"/etc/passwd": true, "/etc/group": true, "/tmp": true}
	for _, f := range s.Files {
		clean := path.Clean(f.Path)
		if !path.IsAbs(f.Path) || clean == "/" {
			errs = append(errs, fmt.Errorf("file %q: the image path must be absolute", f.Path))
			continue
		}
		if seen[clean] {
			errs = append(errs, fmt.Errorf("file %q: listed twice or reserved", f.Path))
		}
		seen[clean] = true
	}
	return errors.Join(errs...)
}

// Write builds the image described by s and writes it as an OCI image-layout
// tarball to out (through a temporary file, so a failure leaves nothing behind).
func Write(out string, s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Arch == "" {
		s.Arch = "amd64"
	}
	layer, err := buildLayer(s)
	if err != nil {
		return err
	}
	layerDesc := descriptor{MediaType: mediaLayer, Digest: digest(layer), Size: int64(len(layer))}

	var cfg imageConfig
	cfg.Created = epoch
	cfg.Architecture = s.Arch
	cfg.OS = "linux"
	cfg.Config.User = fmt.Sprintf("%d:%d", s.UID, s.UID)
	cfg.Config.Entrypoint = s.Entrypoint
	cfg.Config.Cmd = s.Cmd
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"}
	cfg.Config.WorkingDir = "/"
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layerDesc.Digest} // uncompressed: diff ID == digest
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDesc := descriptor{MediaType: mediaConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))}

	man, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: mediaManifest, Config: cfgDesc, Layers: []descriptor{layerDesc}})
	if err != nil {
		return err
	}
	tag := s.Name[strings.LastIndex(s.Name, ":")+1:]
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []descriptor{{
		MediaType: mediaManifest, Digest: digest(man), Size: int64(len(man)),
		Annotations: map[string]string{AnnotationContainerdName: s.Name, AnnotationRefName: tag},
		Platform:    &platform{Architecture: s.Arch, OS: "linux"},
	}}})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", idx},
		{blobPath(cfgDesc.Digest), cfgJSON},
		{blobPath(digest(man)), man},
		{blobPath(layerDesc.Digest), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := writeFile(tw, e.name, 0o644, 0, e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// buildLayer returns the uncompressed rootfs tar.
func buildLayer(s Spec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parents []string
		for d := path.Dir(p); d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(parents[i], "/") + "/", Mode: 0o755, ModTime: epoch}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		}
		return nil
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/tmp:/sbin/nologin\n", s.UID, s.UID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", s.UID)
	if err := mkdirs("/etc/passwd"); err != nil {
		return nil, err
	}
	if err := writeFile(tw, "etc/passwd", 0o644, 0, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := writeFile(tw, "etc/group", 0o644, 0, []byte(group)); err != nil {
		return nil, err
	}
	dirs["/tmp"] = true
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: epoch}); err != nil {
		return nil, err
	}
	files := append([]File(nil), s.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		data, err := os.ReadFile(f.Host)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(f.Host)
		if err != nil {
			return nil, err
		}
		p := path.Clean(f.Path)
		if err := mkdirs(p); err != nil {
			return nil, err
		}
		if err := writeFile(tw, strings.TrimPrefix(p, "/"), int64(st.Mode().Perm()), 0, data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, uid int, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), Uid: uid, Gid: uid, ModTime: epoch}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := io.Copy(tw, bytes.NewReader(data))
	return err
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
