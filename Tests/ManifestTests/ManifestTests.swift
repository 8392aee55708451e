import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Manifest

@Suite("Manifest model and validation")
struct ManifestTests {
    static let example = """
        version = 1

        [chip]
        type = "esp32"
        min_revision = 3
        flash_size = "4MB"
        flash_mode = "dio"
        flash_freq = "40m"

        [images.bootloader]
        file = "build/bootloader/bootloader.bin"
        offset = 0x1000

        [images.partition_table]
        file = "build/partition_table/partition-table.bin"
        offset = 0x8000

        [images.otadata]
        file = "build/ota_data_initial.bin"
        offset = 0x32000

        [images.app]
        file = "build/app.bin"
        offset = 0x60000

        [partitions]
        csv = "partitions.csv"

        [signing]
        key = "keys/secure_boot_signing_key.pem"

        [flash_encryption]
        mode = "host"
        release = true

        [nvs]
        config = "nvs_config.csv"
        values = "device_values.csv"
        partition = "nvs"
        encrypt = true
        keys_partition = "nvs_key"

        [efuse]
        burn = ["JTAG_DISABLE", "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE"]
        write_protect = ["JTAG_DISABLE"]

        [registry]
        url = "postgres://line:secret@127.0.0.1:5432/espforge"
        station = "station-a"

        [first_boot]
        ready_line = "app: ready"
        timeout = 20
        """

    @Test func parsesTheFullExample() throws {
        let m = try Manifest.parse(Self.example)
        #expect(m.chip == .init(type: "esp32", minRevision: 3, flashSize: 4 << 20, flashMode: "dio", flashFreq: "40m"))
        #expect(m.images.bootloader == .init(path: "build/bootloader/bootloader.bin", offset: 0x1000))
        #expect(m.images.app?.offset == 0x60000)
        #expect(m.images.all.map(\.name) == ["bootloader", "partition_table", "otadata", "app"])
        #expect(m.signing == .key(path: "keys/secure_boot_signing_key.pem"))
        #expect(m.flashEncryption == .init(mode: .host, release: true))
        #expect(m.nvs == .init(config: "nvs_config.csv", values: "device_values.csv", partition: "nvs", encrypt: true, keysPartition: "nvs_key"))
        #expect(m.efuse.burn == ["JTAG_DISABLE", "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE"])
        #expect(m.efuse.writeProtect == ["JTAG_DISABLE"])
        #expect(m.registry == .init(url: "postgres://line:secret@127.0.0.1:5432/espforge", station: "station-a"))
        #expect(m.firstBoot == .init(readyLine: "app: ready", timeout: 20))
    }

    @Test func writerOutputReadsBackToTheSameManifest() throws {
        let m = try Manifest.parse(Self.example)
        let again = try Manifest.parse(m.toml(header: ["a header"]))
        #expect(again == m)
        var external = m
        external.signing = .external(publicKey: "pub.pem", bootloaderSignature: "bl.sig", appSignature: "app \"x\".sig")
        external.buildDir = "../build"
        #expect(try Manifest.parse(external.toml()) == external)
        var presigned = m
        presigned.signing = .presigned
        presigned.nvs = nil
        #expect(try Manifest.parse(presigned.toml()) == presigned)
    }

    @Test func minimalManifestWithBuildDir() throws {
        let m = try Manifest.parse("version = 1\n[chip]\nflash_size = 0x400000\n[build]\ndir = \"build\"\n")
        #expect(m.chip.type == "esp32" && m.chip.flashSize == 4 << 20)
        #expect(m.buildDir == "build")
        #expect(m.signing == nil && m.flashEncryption.mode == .none)
        #expect(m.firstBoot.timeout == 30)
    }

    @Test func manifestHashIsSHA256OfTheBytes() {
        #expect(Manifest.hash(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// Replaces `old` in the example with `new` and expects an error at (line, column) mentioning `fragment`.
    static let invalid: [(String, String, Int, Int, String)] = [
        ("version = 1", "version = 2", 1, 11, "unsupported manifest version"),
        ("flash_size = \"4MB\"", "flash_size = \"3MB\"", 6, 14, "power of two"),
        ("flash_size = \"4MB\"", "flash_size = true", 6, 14, "must be a size"),
        ("type = \"esp32\"", "type = \"esp8266\"", 4, 8, "unknown chip"),
        ("flash_mode = \"dio\"", "flash_mode = \"fast\"", 7, 14, "unknown flash mode"),
        ("offset = 0x1000", "offset = 0x1001", 12, 10, "multiple of 0x1000"),
        ("offset = 0x60000", "offset = 0x8000", 24, 10, "same offset"),
        ("offset = 0x60000", "offset = 0x400000", 24, 10, "beyond"),
        ("offset = 0x60000", "offset = \"0x60000\"", 24, 10, "must be an integer"),
        ("[images.app]", "[images.firmware]", 22, 1, "unknown image"),
        ("mode = \"host\"", "mode = \"inplace\"", 33, 8, "unknown flash encryption mode"),
        ("mode = \"host\"", "mode = \"host\"\ncolour = \"red\"", 34, 1, "unknown key `flash_encryption.colour`"),
        ("key = \"keys/secure_boot_signing_key.pem\"", "key = \"k.pem\"\npresigned = true", 30, 7, "more than one way"),
        ("key = \"keys/secure_boot_signing_key.pem\"", "public_key = \"p.pem\"", 30, 14, "missing: bootloader_signature, app_signature"),
        ("\"DISABLE_DL_CACHE\"", "\"DISABLE_DL_CASH\"", 44, 69, "unknown eFuse `DISABLE_DL_CASH`"),
        ("\"DISABLE_DL_CACHE\"", "\"JTAG_DISABLE\"", 44, 69, "listed twice"),
        ("\"DISABLE_DL_CACHE\"", "\"BLOCK1\"", 44, 69, "cannot be in the final plan"),
        ("write_protect = [\"JTAG_DISABLE\"]", "write_protect = [\"CHIP_VER_REV2\"]", 45, 18, "no write-protection bit"),
        ("write_protect = [\"JTAG_DISABLE\"]", "write_protect = \"JTAG_DISABLE\"", 45, 17, "must be an array"),
        ("url = \"postgres://line:secret@127.0.0.1:5432/espforge\"", "url = \"mysql://x\"", 48, 7, "unsupported registry URL"),
        ("timeout = 20", "timeout = 0", 53, 11, "1…3600"),
        ("encrypt = true\nkeys_partition = \"nvs_key\"", "encrypt = false\nkeys_partition = \"nvs_key\"", 41, 18, "encrypt` is false"),
        ("config = \"nvs_config.csv\"\n", "", 36, 1, "`nvs.config` is missing"),
    ]

    @Test(arguments: 0..<invalid.count)
    func validationErrorsCarryLineAndColumn(_ index: Int) throws {
        let (old, new, line, column, fragment) = Self.invalid[index]
        #expect(Self.example.contains(old), "case \(index) does not apply")
        let text = Self.example.replacingOccurrences(of: old, with: new)
        do {
            _ = try Manifest.parse(text)
            Issue.record("case \(index) accepted: \(new)")
        } catch let e as ManifestError {
            #expect(e.message.contains(fragment), "case \(index): \(e.message)")
            #expect(e.position == TOMLPosition(line: line, column: column), "case \(index): \(e.message) at \(String(describing: e.position))")
        }
    }

    @Test func missingPiecesAreNamed() throws {
        #expect(throws: ManifestError.self) { try Manifest.parse("[chip]\nflash_size = \"4MB\"\n") }
        do { _ = try Manifest.parse("version = 1\n") } catch let e as ManifestError { #expect(e.message.contains("[chip]")) }
        do {
            _ = try Manifest.parse("version = 1\n[chip]\nflash_size = \"4MB\"\n")
            Issue.record("accepted a manifest with no images and no build dir")
        } catch let e as ManifestError {
            #expect(e.message.contains("bootloader") && e.message.contains("[build]"))
        }
        // TOML syntax errors come through with their position.
        do { _ = try Manifest.parse("version = 1\n[chip\n") } catch let e as TOMLError { #expect(e.position.line == 2) }
    }

    @Test func randomMutationsOfTheExampleNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let base = Array(Self.example.utf8)
        for _ in 0..<200 {
            var b = base
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<b.count, using: &rng)
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: b[i] = UInt8.random(in: 0...255, using: &rng)
                case 1: b.remove(at: i)
                default: b.insert(b[Int.random(in: 0..<b.count, using: &rng)], at: i)
                }
            }
            do { _ = try Manifest.parse(b) } catch let e as DiagnosticConvertible {
                #expect(e.diagnostic.line != nil, "seed \(seed): \(e.diagnostic)")
            } catch {
                Issue.record("seed \(seed): unexpected error type \(error)")
            }
        }
    }
}

@Suite("Manifest reference example (docs/commands/manifest.md)")
struct ReadmeManifestTests {
    @Test func theAnnotatedExampleInTheManifestReferenceIsValid() throws {
        let readme = try String(contentsOf: TestEnvironment.packageRoot.appendingPathComponent("docs/commands/manifest.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "```toml\n"))
        let end = try #require(readme.range(of: "```", range: start.upperBound..<readme.endIndex))
        let m = try Manifest.parse(String(readme[start.upperBound..<end.lowerBound]))
        #expect(m.flashEncryption.mode == .host)
        #expect(m.efuse.burn.contains("JTAG_DISABLE"))
        #expect(m.signing == .key(path: "keys/secure_boot_signing_key.pem"))
    }
}
