// Package cursorfile keeps the small files that say how far a consumer of
// the store got (the detector, each alert dispatcher, each forwarder): one
// line of JSON and one line with its CRC-32C in hex, replaced atomically
// (vfs.WriteFileAtomic). A crash leaves the old file or the new one; a
// damaged one is reported, never read as a position.
package cursorfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encode returns the file's contents for v.
func Encode(v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(append(body, '\n'), "%08x\n", crc32.Checksum(body, castagnoli)), nil
}

// Decode checks b's checksum and reads its JSON into v.
func Decode(b []byte, v any) error {
	s, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return errors.New("cut short: no final newline")
	}
	body, sum, ok := strings.Cut(s, "\n")
	if !ok {
		return errors.New("no checksum line: the file is cut short or not a cursor")
	}
	if fmt.Sprintf("%08x", crc32.Checksum([]byte(body), castagnoli)) != sum {
		return errors.New("checksum mismatch: the file is damaged")
	}
	return json.Unmarshal([]byte(body), v)
}

// Save writes v to path durably.
func Save(fs vfs.FS, path string, v any) error {
	b, err := Encode(v)
	if err != nil {
		return err
	}
	return vfs.WriteFileAtomic(fs, path, b, 0o600)
}

// Load reads path into v. A missing file gives an error satisfying
// errors.Is(err, os.ErrNotExist); a damaged one says why.
func Load(fs vfs.FS, path string, v any) error {
	b, err := vfs.ReadFile(fs, path)
	if err != nil {
		return err
	}
	return Decode(b, v)
}
