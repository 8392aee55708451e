import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Manifest

/// A synthetic ESP-IDF project with a build directory, as `idf.py build` leaves it for a Secure
/// Boot V2 + flash encryption (release) project: flasher_args.json says `keep` for the flash size
/// and does not list the bootloader.
struct SyntheticProject {
    let root: URL
    var build: URL { root.appendingPathComponent("build") }

    static let flasherArgs = """
        {
            "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "keep", "--flash_freq", "40m" ],
            "flash_settings" : { "flash_mode": "dio", "flash_size": "keep", "flash_freq": "40m" },
            "flash_files" : {
                "0xd000" : "ota_data_initial.bin",
                "0x20000" : "seedapp.bin",
                "0xc000" : "partition_table/partition-table.bin"
            },
            "partition-table" : { "offset" : "0xc000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" },
            "otadata" : { "offset" : "0xd000", "file" : "ota_data_initial.bin", "encrypted" : "false" },
            "app" : { "offset" : "0x20000", "file" : "seedapp.bin", "encrypted" : "false" },
            "extra_esptool_args" : { "after" : "no_reset", "before" : "default_reset", "stub" : true, "chip" : "esp32" }
        }
        """

    static let sdkconfig = """
        CONFIG_IDF_TARGET="esp32"
        CONFIG_ESP32_REV_MIN_3=y
        CONFIG_ESP32_REV_MIN_FULL=300
        CONFIG_ESPTOOLPY_FLASHMODE="dio"
        CONFIG_ESPTOOLPY_FLASHFREQ="40m"
        CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y
        CONFIG_ESPTOOLPY_FLASHSIZE="8MB"
        CONFIG_PARTITION_TABLE_CUSTOM=y
        CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions_seed.csv"
        CONFIG_PARTITION_TABLE_OFFSET=0xc000
        CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME=y
        CONFIG_SECURE_BOOT=y
        CONFIG_SECURE_BOOT_V2_ENABLED=y
        CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y
        CONFIG_SECURE_BOOT_SIGNING_KEY="secure_boot_signing_key.pem"
        # CONFIG_SECURE_BOOT_ALLOW_JTAG is not set
        CONFIG_SECURE_FLASH_ENC_ENABLED=y
        CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y
        # CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC is not set
        # CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC is not set
        CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE=y
        CONFIG_NVS_ENCRYPTION=y
        """

    init(sdkconfig: String? = SyntheticProject.sdkconfig, flasherArgs: String = SyntheticProject.flasherArgs) throws {
        root = try TestEnvironment.temporaryDirectory("espforge-init")
        let fm = FileManager.default
        try fm.createDirectory(at: build.appendingPathComponent("bootloader"), withIntermediateDirectories: true)
        try fm.createDirectory(at: build.appendingPathComponent("partition_table"), withIntermediateDirectories: true)
        try Data(flasherArgs.utf8).write(to: build.appendingPathComponent("flasher_args.json"))
        for f in ["bootloader/bootloader.bin", "seedapp.bin", "partition_table/partition-table.bin", "ota_data_initial.bin"] {
            try Data([0xE9, 0, 0, 0]).write(to: build.appendingPathComponent(f))
        }
        if let sdkconfig { try Data(sdkconfig.utf8).write(to: root.appendingPathComponent("sdkconfig")) }
        try Data("nvs,data,nvs,0x10000,0x6000,\n".utf8).write(to: root.appendingPathComponent("partitions_seed.csv"))
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    func reader(_ relative: String) -> [UInt8]? {
        FileManager.default.contents(atPath: build.appendingPathComponent(relative).standardizedFileURL.path).map { [UInt8]($0) }
    }
}

@Suite("espforge init from an ESP-IDF build directory")
struct InitTests {
    @Test func readsImagesFlashSizeAndSecurityFromTheBuild() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        let b = try IDFBuild.read(readFile: p.reader)
        #expect(b.chip == "esp32")
        #expect(b.flashSize == 8 << 20, "flash size must come from sdkconfig, flasher_args says keep")
        #expect(b.flashMode == "dio" && b.flashFreq == "40m")
        #expect(b.minRevision == 3)
        #expect(b.images.bootloader == .init(path: "bootloader/bootloader.bin", offset: 0x1000))
        #expect(b.images.partitionTable == .init(path: "partition_table/partition-table.bin", offset: 0xC000))
        #expect(b.images.app == .init(path: "seedapp.bin", offset: 0x20000))
        #expect(b.images.otadata == .init(path: "ota_data_initial.bin", offset: 0xD000))
        #expect(b.secureBootV2 && b.signedBinaries && b.flashEncryption && b.flashEncryptionRelease && b.nvsEncryption)
        #expect(b.partitionsCSV == "partitions_seed.csv")
        #expect(b.notes.contains { $0.contains("bootloader") })

        let m = b.manifest(buildDir: "build")
        #expect(m.images.app?.path == "build/seedapp.bin")
        #expect(m.partitionsCSV == "partitions_seed.csv")
        #expect(m.signing == .presigned)
        #expect(m.flashEncryption == .init(mode: .onChip, release: true))
        #expect(m.efuse.burn == ["JTAG_DISABLE", "CONSOLE_DEBUG_DISABLE", "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT"])
        #expect(try Manifest.parse(m.toml()) == m)
    }

    @Test func manifestWithOnlyABuildDirTakesItsImagesFromTheBuild() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        let m = try Manifest.parse("version = 1\n[chip]\nflash_size = \"8MB\"\n[build]\ndir = \"fw/build\"\n[images.app]\nfile = \"other.bin\"\noffset = 0x20000\n")
        let r = m.resolvingImages(from: try IDFBuild.read(readFile: p.reader))
        #expect(r.images.app == .init(path: "other.bin", offset: 0x20000), "listed images win")
        #expect(r.images.bootloader == .init(path: "fw/build/bootloader/bootloader.bin", offset: 0x1000))
        #expect(r.images.partitionTable == .init(path: "fw/build/partition_table/partition-table.bin", offset: 0xC000))
        #expect(r.images.otadata?.path == "fw/build/ota_data_initial.bin")
    }

    @Test func unsignedBuildNamesTheSigningKeyAndPlainBuildHasNoSecurity() throws {
        let unsigned = SyntheticProject.sdkconfig.replacingOccurrences(of: "CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y", with: "")
        let p = try SyntheticProject(sdkconfig: unsigned)
        defer { p.remove() }
        let m = try IDFBuild.read(readFile: p.reader).manifest(buildDir: "fw/build")
        #expect(m.signing == .key(path: "fw/secure_boot_signing_key.pem"))
        #expect(m.partitionsCSV == "fw/partitions_seed.csv")

        let plain = try SyntheticProject(sdkconfig: "CONFIG_IDF_TARGET=\"esp32\"\nCONFIG_ESPTOOLPY_FLASHSIZE=\"4MB\"\n")
        defer { plain.remove() }
        let pm = try IDFBuild.read(readFile: plain.reader).manifest(buildDir: "build")
        #expect(pm.signing == nil && pm.flashEncryption.mode == .none && pm.efuse.burn.isEmpty && pm.partitionsCSV == nil)
        #expect(pm.chip.flashSize == 4 << 20)
    }

    @Test func errorsNameTheMissingFile() throws {
        let p = try SyntheticProject(sdkconfig: nil)
        defer { p.remove() }
        #expect(throws: IDFBuildError.self) { try IDFBuild.read(readFile: p.reader) }
        do { _ = try IDFBuild.read(readFile: p.reader) } catch { #expect(error.message.contains("sdkconfig")) }

        let noSize = try SyntheticProject(sdkconfig: "CONFIG_IDF_TARGET=\"esp32\"\n")
        defer { noSize.remove() }
        do {
            _ = try IDFBuild.read(readFile: noSize.reader)
            Issue.record("accepted a build with flash size `keep` and no CONFIG_ESPTOOLPY_FLASHSIZE")
        } catch { #expect(error.message.contains("keep")) }

        let badJSON = try SyntheticProject(flasherArgs: "{ not json")
        defer { badJSON.remove() }
        #expect(throws: IDFBuildError.self) { try IDFBuild.read(readFile: badJSON.reader) }
        #expect(throws: IDFBuildError.self) { try IDFBuild.read(readFile: { _ in nil }) }
    }

    @Test func randomBuildFilesNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let args = Array(SyntheticProject.flasherArgs.utf8), sdk = Array(SyntheticProject.sdkconfig.utf8)
        for _ in 0..<150 {
            var a = args, c = sdk
            for _ in 0..<3 {
                a[Int.random(in: 0..<a.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                c[Int.random(in: 0..<c.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { a = Array(a.prefix(Int.random(in: 0...a.count, using: &rng))) }
            let files: [String: [UInt8]] = ["flasher_args.json": a, "../sdkconfig": c, "bootloader/bootloader.bin": [0xE9]]
            do {
                let b = try IDFBuild.read(readFile: { files[$0] })
                // Whatever it read must make a manifest that writes and reads back.
                let m = b.manifest(buildDir: "build")
                #expect(try Manifest.parse(m.toml()) == m, "seed \(seed)")
            } catch let e as IDFBuildError {
                #expect(!e.message.isEmpty, "seed \(seed)")
            } catch {
                Issue.record("seed \(seed): a build that reads must make a manifest that reads back: \(error)")
            }
        }
    }

    @Test func sdkconfigParsing() {
        let c = IDFBuild.parseSdkconfig("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x \\\"q\\\"\"\nCONFIG_D=0x10\n\n# comment\n")
        #expect(c == ["CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "x \"q\"", "CONFIG_D": "0x10"])
        #expect(IDFBuild.relativePath(from: "/a/b", to: "/a/c/d") == "../c/d")
        #expect(IDFBuild.relativePath(from: "/a/b", to: "/a/b") == ".")
        #expect(IDFBuild.join("../x/build", "..") == "../x")
    }

    @Test func cliWritesAManifestThatParses() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        let out = p.root.appendingPathComponent("line/espforge.toml")
        try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
        let r = try Espforge.run(["init", "--build-dir", p.build.path, "-o", out.path])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("8MB flash"))
        #expect(r.err.contains("bootloader"), "the note about the bootloader is shown")
        let text = try String(contentsOf: out, encoding: .utf8)
        let m = try Manifest.parse(text)
        #expect(m.buildDir == "../build")
        #expect(m.images.app?.path == "../build/seedapp.bin")
        #expect(FileManager.default.fileExists(atPath: out.deletingLastPathComponent().appendingPathComponent(m.images.app?.path ?? "-").path))
        #expect(m.chip.minRevision == 3)

        let again = try Espforge.run(["init", "--build-dir", p.build.path, "-o", out.path])
        #expect(again.status == 1 && again.err.contains("--force"))
        let missing = try Espforge.run(["init", "--build-dir", p.root.appendingPathComponent("nope").path, "-o", out.path, "--force"])
        #expect(missing.status == 1 && missing.err.contains("no such directory"))
    }
}

@Suite("ManifestInit: init as a library call")
struct ManifestInitLibraryTests {
    @Test func writesTheManifestAndSaysWhatItWrote() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        let out = p.root.appendingPathComponent("espforge.toml").path
        let written = try ManifestInit.write(buildDir: p.build.path, output: out, force: false)
        let m = try Manifest.parse(try String(contentsOfFile: out, encoding: .utf8))
        #expect(m.flashEncryption.mode != .none)
        #expect(written.summary == "wrote \(out): esp32, 8MB flash, secure boot v2, flash encryption \(m.flashEncryption.mode.rawValue), "
                + "\(m.images.all.count) images")
        #expect(m.buildDir == "build" && m.chip.flashSize == 8 << 20)
        #expect(!written.build.notes.isEmpty)
        // An existing manifest is kept unless forced; a missing build folder is named.
        #expect(throws: UsageError.self) { try ManifestInit.write(buildDir: p.build.path, output: out, force: false) }
        #expect(throws: UsageError.self) { try ManifestInit.write(buildDir: p.root.path + "/nope", output: out, force: true) }
        #expect(try ManifestInit.write(buildDir: p.build.path, output: out, force: true).path == out)
    }
}
