package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quinistry/quinistry/attest"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
)

// attestPoll is how often the attestations directory is looked at for a
// change (a mounted ConfigMap's update moves its ..data link).
var attestPoll = 2 * time.Second

// attestations serves the bundles of a directory as referrers of the
// content, and loads them again when the directory changes.
type attestations struct {
	dir     string
	content *index.Content
	log     *slog.Logger
	// seen is the directory's fingerprint at the last load, good or bad.
	seen string
}

// load reads the directory and makes its referrers, logging one warning
// for each bundle that names no served digest.
func (a *attestations) load() (*index.ArtifactSet, error) {
	a.seen, _ = attest.Fingerprint(a.dir)
	bundles, err := attest.Load(a.dir)
	if err != nil {
		return nil, err
	}
	arts, skipped, err := attest.Artifacts(a.content, bundles)
	if err != nil {
		return nil, err
	}
	for _, b := range skipped {
		subjects := make([]string, len(b.Subjects))
		for i, d := range b.Subjects {
			subjects[i] = d.String()
		}
		a.log.Warn("attestation names no digest served here; not served", "file", b.File, "bundle", b.Digest.String(),
			"predicate_type", b.PredicateType, "subjects", subjects)
	}
	a.log.Info("attestations loaded", "dir", a.dir, "bundles", len(bundles)-len(skipped), "skipped", len(skipped), "referrers", len(arts))
	return index.NewArtifactSet(arts), nil
}

// watch loads the directory again into reg on SIGHUP, and when its
// fingerprint changes, until ctx ends. A load that fails is logged and
// keeps the set served before.
func (a *attestations) watch(ctx context.Context, reg *registry.Registry) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(attestPoll)
	defer tick.Stop()
	for {
		why := "SIGHUP"
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if fp, err := attest.Fingerprint(a.dir); err == nil && fp == a.seen {
				continue
			}
			why = "the directory changed"
		}
		set, err := a.load()
		if err != nil {
			a.log.Error("attestations not reloaded; still serving the previous ones", "reason", why, "error", err.Error())
			continue
		}
		reg.SetAttestations(set)
	}
}
