import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Manifest

@Suite("manifest vs the ESP-IDF build's sdkconfig")
struct BuildConsistencyTests {
    /// The synthetic build (Secure Boot V2 with signed binaries, flash encryption release, table at 0xc000).
    static func build(_ sdkconfig: String = SyntheticProject.sdkconfig) throws -> IDFBuild {
        let p = try SyntheticProject(sdkconfig: sdkconfig)
        defer { p.remove() }
        return try IDFBuild.read(readFile: p.reader)
    }

    /// The first problem's text, or nil when the manifest and the build agree.
    static func problem(_ m: Manifest, _ b: IDFBuild) -> BuildMismatchError? {
        do { try m.checkConsistency(with: b, manifestFile: "line/espforge.toml", sdkconfigFile: "fw/sdkconfig"); return nil } catch { return error }
    }

    /// A manifest naming only the build (images come from it), as `init` would state the security settings.
    static func buildOnly(_ b: IDFBuild) -> Manifest {
        var m = b.manifest(buildDir: "build")
        m.images = .init()
        return m
    }

    @Test func theManifestInitWritesAgreesWithItsBuild() throws {
        let b = try Self.build()
        #expect(b.sdkconfigFile == "../sdkconfig")
        #expect(Self.problem(b.manifest(buildDir: "build"), b) == nil)
        #expect(Self.problem(Self.buildOnly(b), b) == nil)
        // Signing with a key is fine too (provision uses images the key already signed as they are).
        var keyed = Self.buildOnly(b)
        keyed.signing = .key(path: "k.pem")
        #expect(Self.problem(keyed, b) == nil)
    }

    @Test func flashEncryptionMismatchNamesBothFilesAndTheOption() throws {
        let off = SyntheticProject.sdkconfig.replacingOccurrences(of: "CONFIG_SECURE_FLASH_ENC_ENABLED=y", with: "# CONFIG_SECURE_FLASH_ENC_ENABLED is not set")
            .replacingOccurrences(of: "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y\n", with: "")
        let b = try Self.build(off)
        var m = Self.buildOnly(b)
        m.flashEncryption = .init(mode: .onChip, release: false)
        let e = try #require(Self.problem(m, b))
        let text = e.diagnostic.description
        #expect(text.contains("line/espforge.toml") && text.contains("fw/sdkconfig"), "\(text)")
        #expect(text.contains("on-chip") && text.contains("CONFIG_SECURE_FLASH_ENC_ENABLED unset"), "\(text)")
        #expect(e.hint?.contains("mode = \"none\"") == true)
        m.flashEncryption = .init(mode: .host, release: false)
        #expect(Self.problem(m, b)?.problems.first?.contains("`host`") == true)
        m.flashEncryption = .init(mode: .none, release: true)
        #expect(Self.problem(m, b) == nil)

        // The other way round: the build encrypts, the manifest says none.
        let on = try Self.build()
        var none = Self.buildOnly(on)
        none.flashEncryption = .init(mode: .none)
        #expect(Self.problem(none, on)?.problems.first?.contains("CONFIG_SECURE_FLASH_ENC_ENABLED=y") == true)
    }

    @Test func releaseModeSigningAndTableOffsetMismatches() throws {
        let b = try Self.build()
        var dev = Self.buildOnly(b)
        dev.flashEncryption.release = false
        #expect(Self.problem(dev, b)?.problems.first?.contains("CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y") == true)

        var unsigned = Self.buildOnly(b)
        unsigned.signing = nil
        #expect(Self.problem(unsigned, b)?.problems.first?.contains("CONFIG_SECURE_BOOT_V2_ENABLED=y") == true)

        // External signatures over images the build already signed.
        var external = Self.buildOnly(b)
        external.signing = .external(publicKey: "p.pem", bootloaderSignature: "b.sig", appSignature: "a.sig")
        #expect(Self.problem(external, b)?.problems.first?.contains("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y") == true)
        // … unless the manifest lists its own (unsigned) bootloader and app.
        external.images = .init(bootloader: .init(path: "b.bin", offset: 0x1000), app: .init(path: "a.bin", offset: 0x20000))
        #expect(Self.problem(external, b) == nil)

        var moved = Self.buildOnly(b)
        moved.images.partitionTable = .init(path: "t.bin", offset: 0x8000)
        #expect(Self.problem(moved, b)?.problems.first?.contains("CONFIG_PARTITION_TABLE_OFFSET=0xc000") == true)

        var chip = Self.buildOnly(b)
        chip.chip.type = "esp32s3"
        #expect(Self.problem(chip, b)?.problems.first?.contains("esp32s3") == true)

        // Several problems are all reported.
        var both = Self.buildOnly(b)
        both.signing = nil
        both.flashEncryption.mode = .none
        #expect(Self.problem(both, b)?.problems.count == 2)
    }

    @Test func presignedNeedsABuildThatSigns() throws {
        let unsignedBuild = try Self.build(SyntheticProject.sdkconfig.replacingOccurrences(of: "CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES=y", with: ""))
        var m = Self.buildOnly(unsignedBuild)
        m.signing = .presigned
        #expect(Self.problem(m, unsignedBuild)?.problems.first?.contains("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES unset") == true)
        m.signing = .key(path: "secure_boot_signing_key.pem")
        #expect(Self.problem(m, unsignedBuild) == nil)

        // A plain build (no security) and a plain manifest agree; a manifest that signs does not.
        let plain = try Self.build("CONFIG_IDF_TARGET=\"esp32\"\nCONFIG_ESPTOOLPY_FLASHSIZE=\"4MB\"\n")
        var pm = Self.buildOnly(plain)
        #expect(Self.problem(pm, plain) == nil)
        pm.signing = .presigned
        #expect(Self.problem(pm, plain)?.problems.first?.contains("CONFIG_SECURE_BOOT_V2_ENABLED unset") == true)
    }
}
