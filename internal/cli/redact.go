package cli

import (
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// redactFlags choose how a command that stores events redacts them
// (docs/ingest.md, "Redaction"): on by default, with the key in the data
// folder.
type redactFlags struct {
	off     bool
	keyFile string
}

func (f *redactFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.off, "no-redact", false, "store events exactly as received; by default Secret data, service account and review tokens, credentials in query strings and authorization-like annotations are replaced by keyed markers before anything is written")
	fl.StringVar(&f.keyFile, "redact-key-file", "", "key of the markers' HMAC-SHA256 (at least 32 bytes, chmod 600); give every collector of one store the same file so that equal values get equal markers (default: DATA/redact.key, generated on first use)")
}

// wrap puts redaction in front of sink. dataDir is the folder of the
// generated key; "" when events go to a server, which redacts them itself
// unless --redact-key-file asks to redact before sending as well.
func (f *redactFlags) wrap(sink pipeline.Sink, dataDir string, log *slog.Logger) (pipeline.Sink, *pipeline.Redactor, error) {
	switch {
	case f.off && f.keyFile != "":
		return nil, nil, errors.New("--no-redact and --redact-key-file: choose one")
	case f.off && dataDir == "":
		return nil, nil, errors.New("--no-redact with --server: the server redacts what it stores; start it with serve --no-redact to turn that off")
	case f.off:
		return sink, nil, nil
	case f.keyFile == "" && dataDir == "":
		return sink, nil, nil
	}
	var key []byte
	if f.keyFile != "" {
		if err := checkSecretFile("--redact-key-file", f.keyFile); err != nil {
			return nil, nil, err
		}
		k, err := pipeline.LoadRedactKey(f.keyFile)
		if err != nil {
			return nil, nil, err
		}
		key = k
	} else {
		path := filepath.Join(dataDir, pipeline.RedactKeyFile)
		k, created, err := pipeline.LoadOrCreateRedactKey(path)
		if err != nil {
			return nil, nil, err
		}
		if err := checkSecretFile("redaction key", path); err != nil {
			return nil, nil, err
		}
		if created {
			log.Info("generated the redaction key; give it to every collector of this store with --redact-key-file", "path", path)
		}
		key = k
	}
	r, err := pipeline.NewRedactor(key)
	if err != nil {
		return nil, nil, err
	}
	return pipeline.NewRedact(sink, r), r, nil
}
