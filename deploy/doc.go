// Package deploy holds the files that deploy httpmirror: the Kubernetes
// manifests (kubernetes/, a kustomize base) and the systemd unit
// (systemd/); the Dockerfile is at the repository's root. It has no
// code: its test decodes every manifest strictly and checks that every
// flag and HTTPMIRROR_ variable the files pass is one the command takes.
package deploy
