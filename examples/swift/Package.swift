// swift-tools-version:6.0
// A SwiftPM package that depends on trmask by path and uses its Swift API (`TRMask`).
import PackageDescription

let package = Package(
    name: "TRMaskExample",
    dependencies: [.package(name: "trmask", path: "../..")],
    targets: [
        .executableTarget(name: "TRMaskExample", dependencies: [.product(name: "TRMask", package: "trmask")]),
    ]
)
