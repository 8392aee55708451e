// swift-tools-version:6.0
// espforge — ESP32 production provisioning: byte-exact image, signing, encryption and NVS cores
// plus the `espforge` command-line tool. See README.md for the architecture map.
import PackageDescription

// The parsers the fuzz targets feed (no registry drivers: registry URLs are in RegistryCore).
let fuzzTargetDependencies: [Target.Dependency] = [
    "ESPCore", "ImageFormat", "SecureBoot", "Partitions", "NVS", "EFuse", "Loader", "VirtualDevice",
    "BootSimulator", "Diagnostics", "Manifest", "RegistryCore", "Transport", "Flasher", "KeyCustody",
]

let package = Package(
    name: "espforge",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "espforge", targets: ["espforge"]),
        // Examples/LineDriver: two virtual devices provisioned through the library API (run by ExampleProgramTests).
        .executable(name: "espforge-example-line", targets: ["LineDriverExample"]),
        // Products a program can pick (docs/architecture.md). `./scripts/check-products` proves
        // that Formats and Device reach no database or networking package.
        // Formats and crypto: parse, build, sign and encrypt images, partition tables, NVS, eFuse
        // layouts, the manifest; PKCS#11 key custody. Builds swift-crypto (and swift-asn1) only.
        .library(name: "ESPForgeFormats", targets: [
            "ESPCore", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions", "NVS", "EFuse",
            "Manifest", "KeyCustody",
        ]),
        // Device I/O and the virtual device: loader protocol, serial/socket links, flasher,
        // virtual ESP32, first-boot simulator, preflight/doctor rules. No database, no networking package.
        .library(name: "ESPForgeDevice", targets: [
            "Loader", "Transport", "Flasher", "VirtualDevice", "BootSimulator", "Diagnostics",
        ]),
        // The production line: the per-device pipeline, manifest → job, the station, the registry
        // (SQLite and PostgreSQL), key custody.
        .library(name: "ESPForgeLine", targets: ["Provisioning", "ProductionLine", "Registry", "RegistryCore", "KeyCustody"]),
        // The station's read-only web dashboard (Hummingbird 2): only programs that serve it build HTTP.
        .library(name: "ESPForgeStationDashboard", targets: ["StationDashboard"]),
        // Everything (compatibility with programs written against the single product).
        .library(name: "ESPForge", targets: [
            "ESPCore", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions", "NVS",
            "EFuse", "Loader", "VirtualDevice", "BootSimulator", "Diagnostics",
            "Manifest", "Registry", "Transport", "Flasher", "Provisioning", "KeyCustody", "ProductionLine",
        ]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        // DER/PEM of key files (already part of swift-crypto's graph).
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        // Device registry: SQLite (default) and PostgreSQL (several stations on one line).
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.20.0"),
        // The station's web dashboard (module StationDashboard only).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
    ],
    targets: [
        // zlib, through the system library (zlib1g-dev on Debian).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib",
                       providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]),

        // Shared vocabulary: byte reading/writing, CRC32, size parsing, diagnostics, chip tables.
        .target(name: "ESPCore"),

        // Domain cores (pure: bytes in, bytes out).
        // (image info reports the Secure Boot V2 signature sector found after an image.)
        .target(name: "ImageFormat", dependencies: [
            "ESPCore", "SecureBoot", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "SecureBoot", dependencies: [
            "ESPCore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
        ]),
        // AES block cipher for flash encryption and NVS: AES-NI (chosen at run time) + portable tables.
        .target(name: "CAES"),
        .target(name: "FlashEncryption", dependencies: [
            "ESPCore", "Partitions", "CAES", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "Partitions", dependencies: [
            "ESPCore", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "NVS", dependencies: [
            "ESPCore", "CAES", .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // ESP32 eFuse model: field map (data table per chip), blocks, program/read/protect semantics.
        .target(name: "EFuse", dependencies: ["ESPCore"]),
        // Serial loader wire format: SLIP codec and command/response packets (direction-neutral).
        .target(name: "Loader", dependencies: ["ESPCore"]),
        // The virtual ESP32: NOR flash, register map, ROM/stub protocol engine, time model, server,
        // and its in-process port (virtual:DIR, a Transport ChipPort).
        .target(name: "VirtualDevice", dependencies: [
            "ESPCore", "EFuse", "Loader", "CZlib", "FlashEncryption", "Transport",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // First-boot simulator: ESP32 ROM + ESP-IDF second-stage bootloader on a virtual device.
        .target(name: "BootSimulator", dependencies: [
            "ESPCore", "EFuse", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions", "VirtualDevice",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // The safety rules of a flash plan (flash, preflight, provision: one engine) and boot-log
        // analysis (doctor): pure rule engines.
        .target(name: "Diagnostics", dependencies: [
            "ESPCore", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions", "EFuse",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // The production manifest (`espforge.toml`): strict TOML subset, model + validation,
        // ESP-IDF build directory reader.
        .target(name: "Manifest", dependencies: [
            "ESPCore", "EFuse", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The registry's errors and location URLs, without the database drivers (fuzzed alone).
        .target(name: "RegistryCore", dependencies: ["ESPCore"]),
        // The device registry: SQLite (GRDB) and PostgreSQL (postgres-nio) behind one protocol.
        .target(name: "Registry", dependencies: [
            "ESPCore", "RegistryCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ]),

        // Serial-port ioctls Swift cannot express (termios2 custom baud, modem lines, pty pairs).
        .target(name: "CSerial"),
        // Links to a chip's loader: serial (termios), socket://, virtual:DIR through an injected opener; reset sequences.
        .target(name: "Transport", dependencies: ["ESPCore", "CSerial"]),
        // Host-side loader client, flash session (retry/resume), multi-device runner; its writes are
        // checked by Diagnostics' safety rules (the one engine of flash, preflight and provision).
        .target(name: "Flasher", dependencies: [
            "ESPCore", "Loader", "Transport", "EFuse", "Diagnostics", "CZlib",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // PKCS#11 (Cryptoki) through dlopen, with espforge's own declarations of the standard types.
        .target(name: "CPKCS11", linkerSettings: [.linkedLibrary("dl")]),
        // Key custody: Secure Boot keys on PKCS#11 tokens, escrow of per-device keys (HPKE / RSA-OAEP).
        .target(name: "KeyCustody", dependencies: [
            "ESPCore", "SecureBoot", "CPKCS11",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),

        // The production line: the per-device pipeline over a registry and device links (in-process
        // virtual devices, or any port through the flasher).
        .target(name: "Provisioning", dependencies: [
            "ESPCore", "ImageFormat", "FlashEncryption", "Partitions", "NVS", "EFuse",
            "VirtualDevice", "BootSimulator", "Diagnostics", "Registry", "Transport", "Flasher", "KeyCustody",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),

        // The line as an API: manifest → job, ports → provisioned devices, the station's slots.
        .target(name: "ProductionLine", dependencies: [
            "ESPCore", "ImageFormat", "SecureBoot", "Partitions", "NVS", "EFuse", "FlashEncryption",
            "VirtualDevice", "BootSimulator", "Diagnostics", "Manifest", "Registry", "Transport", "Flasher",
            "Provisioning", "KeyCustody",
        ]),

        // The station's read-only web dashboard (HTTP: only programs that serve it build it).
        .target(name: "StationDashboard", dependencies: [
            "ESPCore", "ProductionLine", "Provisioning", "Registry",
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),

        // The command-line tool: parses arguments, does file I/O, prints.
        .executableTarget(name: "espforge", dependencies: [
            "ESPCore", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions", "NVS",
            "EFuse", "VirtualDevice", "BootSimulator", "Diagnostics",
            "Manifest", "Registry", "Transport", "Flasher", "Provisioning", "KeyCustody", "ProductionLine", "StationDashboard",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // An example program using only the library targets (docs/architecture.md, "Products").
        .executableTarget(name: "LineDriverExample", dependencies: [
            "ImageFormat", "NVS", "Partitions", "Provisioning", "Registry", "SecureBoot", "VirtualDevice",
        ], path: "Examples/LineDriver"),

        // Test helpers: fixture paths, the Python oracle, running the built tool.
        .target(name: "TestSupport", dependencies: ["ESPCore", "ImageFormat", "SecureBoot", "Partitions"], path: "Tests/TestSupport"),
        .testTarget(name: "ESPCoreTests", dependencies: ["ESPCore", "TestSupport"]),
        .testTarget(name: "ImageFormatTests", dependencies: ["ImageFormat", "TestSupport"]),
        .testTarget(name: "SecureBootTests", dependencies: [
            "SecureBoot", "TestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .testTarget(name: "FlashEncryptionTests", dependencies: ["FlashEncryption", "Partitions", "CAES", "TestSupport"]),
        .testTarget(name: "PartitionsTests", dependencies: [
            "Partitions", "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "NVSTests", dependencies: ["NVS", "TestSupport"]),
        .testTarget(name: "EFuseTests", dependencies: ["EFuse", "VirtualDevice", "TestSupport"]),
        .testTarget(name: "LoaderTests", dependencies: ["Loader", "TestSupport"]),
        .testTarget(name: "VirtualDeviceTests", dependencies: [
            "VirtualDevice", "EFuse", "Loader", "CZlib", "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "BootSimulatorTests", dependencies: [
            "BootSimulator", "VirtualDevice", "EFuse", "ImageFormat", "SecureBoot", "FlashEncryption", "Partitions",
            "TestSupport", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "DiagnosticsTests", dependencies: [
            "Diagnostics", "ImageFormat", "SecureBoot", "Partitions", "EFuse", "ESPCore", "TestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "ManifestTests", dependencies: ["Manifest", "Diagnostics", "BootSimulator", "TestSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "TestSupport"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "CSerial", "VirtualDevice", "Loader", "TestSupport"]),
        .testTarget(name: "FlasherTests", dependencies: [
            "Flasher", "Transport", "VirtualDevice", "ImageFormat", "SecureBoot", "EFuse", "Loader", "TestSupport",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Preflight --simulate vs. esptool + device boot, doctor on simulated logs (through the CLI).
        .testTarget(name: "IntegrationTests", dependencies: [
            "BootSimulator", "Diagnostics", "VirtualDevice", "ESPCore", "EFuse", "FlashEncryption", "TestSupport",
        ]),
        // The golden QEMU recordings of the real ROM/bootloader (../shared/golden/qemu-esp32) replayed.
        .testTarget(name: "GoldenReplayTests", dependencies: [
            "BootSimulator", "VirtualDevice", "EFuse", "ESPCore", "Flasher", "Provisioning", "TestSupport", "Diagnostics",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "KeyCustodyTests", dependencies: [
            "KeyCustody", "SecureBoot", "Registry", "VirtualDevice", "TestSupport",
        ]),
        // The station's slot state machine, and a station on a fleet of virtual boards (CLI).
        .testTarget(name: "StationTests", dependencies: [
            "ProductionLine", "StationDashboard", "Provisioning", "Manifest", "Registry", "TestSupport",
            "BootSimulator", "EFuse", "SecureBoot", "ImageFormat", "Partitions", "VirtualDevice", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Every parser's fuzz target (shared with the libFuzzer driver, see docs/fuzzing.md) and the
        // replay of Fuzz/regressions and Fuzz/seeds through them.
        .target(name: "FuzzTargets", dependencies: fuzzTargetDependencies, path: "Fuzz/Targets"),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets", "ESPCore", "TestSupport"]),
        .testTarget(name: "ProvisioningTests", dependencies: [
            "Provisioning", "Registry", "VirtualDevice", "BootSimulator", "EFuse", "NVS", "Partitions", "SecureBoot",
            "ImageFormat", "Flasher", "TestSupport", "KeyCustody", "FlashEncryption",
        ]),
    ],
    swiftLanguageModes: [.v6]
)

// `ESPFORGE_FUZZ=1` (set by ./scripts/fuzz, with its own --scratch-path .build-fuzz): the libFuzzer
// driver, and coverage instrumentation + AddressSanitizer (optimised, -O) on our Swift targets, ASan + UBSan on our
// C targets. Never part of the default build.
if let runtime = Context.environment["ESPFORGE_FUZZ_RUNTIME"], Context.environment["ESPFORGE_FUZZ"] == "1" {
    let ours = Set(package.targets.filter { $0.type == .regular }.map(\.name))
    for target in package.targets where ours.contains(target.name) {
        if ["CAES", "CSerial", "CPKCS11"].contains(target.name) {
            target.cSettings = (target.cSettings ?? []) + [.unsafeFlags(["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"])]
        } else {
            target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-sanitize=fuzzer,address", "-O"])]
        }
    }
    // libFuzzer without its main(): the driver's main picks the target, then runs LLVMFuzzerRunDriver.
    package.targets.append(.executableTarget(
        name: "espforge-fuzz", dependencies: ["FuzzTargets"], path: "Fuzz/Driver",
        swiftSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-O"])],
        linkerSettings: [.unsafeFlags(["-sanitize=address", "-Xlinker", runtime, "-lstdc++",
                                       "-Xclang-linker", "-fsanitize=undefined"])]))
}
