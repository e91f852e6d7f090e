//go:build tools

// Package e2e holds the end-to-end tests that run kubetrail against a real
// kube-apiserver, etcd and kubectl.
//
// This file only pins the kube-apiserver, kubectl and etcd main packages in
// go.mod so that build.sh can build them with the versions recorded here.
package e2e

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
