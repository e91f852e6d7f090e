package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

// TestImageRecipeBuildsStaticBinary checks the container image's recipe
// without a container engine: the Dockerfile builds with `make static` and
// ships the result on a distroless or scratch base as user 65532; `make
// static` gives an ELF with no program interpreter and no shared library,
// which such a base can run; and the binary starts. (Mutation tried:
// CGO_ENABLED=1 in the Makefile's static target links libc dynamically and
// fails here.)
func TestImageRecipeBuildsStaticBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image is a Linux one")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^RUN make static BIN=/out/kubetrail\b`,
		`(?m)^FROM (gcr\.io/distroless/static[-a-z0-9]*:nonroot|scratch)\n`,
		`(?m)^COPY --from=build /out/kubetrail `,
		`(?m)^USER 65532(:65532)?\n`,
	} {
		if !regexp.MustCompile(want).Match(df) {
			t.Errorf("Dockerfile does not match %s", want)
		}
	}

	bin := filepath.Join(t.TempDir(), "kubetrail")
	cmd := exec.Command("make", "-C", root, "static", "BIN="+bin, "COMMIT=static-test")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make static: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("make static: the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("make static: the binary needs shared libraries %v (%v)", libs, err)
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
		t.Errorf("%s version: %v\n%s", bin, err, out)
	}
}
