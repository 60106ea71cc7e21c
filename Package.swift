// swift-tools-version:6.0
// trmask: Trust Region Masking kernels for LLM reinforcement learning.
//
// Layers (one target each): TRMaskKernels (pure Swift, Foundation-free kernels; TRMaskPrefetch is
// its one-line C prefetch hint), TRMask (the public
// Swift API), CTRMask (the hand-written C header in include/), TRMaskCABI (the C entry points,
// validate and translate only). Tuning flags (-static-stdlib, -march) live in the Makefile, not
// here: unsafeFlags would stop other packages from depending on this one.
import PackageDescription

let package = Package(
    name: "trmask",
    products: [
        .library(name: "trmask", type: .dynamic, targets: ["TRMaskCABI"]),
        .library(name: "TRMask", targets: ["TRMask"]),
    ],
    targets: [
        .target(name: "TRMaskPrefetch", path: "Sources/TRMaskPrefetch"),
        .target(name: "TRMaskKernels", dependencies: ["TRMaskPrefetch"], path: "Sources/TRMaskKernels"),
        .target(name: "TRMask", dependencies: ["TRMaskKernels"], path: "Sources/TRMask"),
        .target(name: "CTRMask", path: "include", exclude: ["README.md"], publicHeadersPath: "."),
        .target(name: "TRMaskCABI", dependencies: ["CTRMask", "TRMaskKernels"], path: "Sources/TRMaskCABI"),
        .testTarget(name: "TRMaskKernelsTests", dependencies: ["TRMaskKernels"], path: "Tests/TRMaskKernelsTests"),
        .testTarget(name: "TRMaskTests", dependencies: ["TRMask"], path: "Tests/TRMaskTests"),
        .testTarget(name: "TRMaskCABITests", dependencies: ["TRMaskCABI", "CTRMask"], path: "Tests/TRMaskCABITests"),
    ]
)
