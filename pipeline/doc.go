// Package ci is the build pipeline: the step model, the plan that chains
// the steps (agent, kernel, rootfs, image, boot test), and the helpers the
// Mage targets call. Engines live in ci/engine/...; steps never import one.
package pipeline
