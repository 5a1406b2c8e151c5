// Package deploy holds no code. The directory is how Rosetta ships: the
// container image (Dockerfile, built with build.sh) and the Kubernetes
// manifests (kubernetes/). Its tests check them offline, since no
// container engine or cluster runs in `make test`: every manifest parses,
// agrees with the Dockerfile and the others, and carries a config that
// Rosetta's validation accepts; the Dockerfile and `make build-static`
// both build with build.sh; and the binary build.sh makes is static
// (checked by `make build-static`, see TestStaticBinary).
package deploy
