import BootSimulator
import EFuse
import Foundation
import ImageFormat
import Registry
import SecureBoot
import Testing
import TestSupport
import VirtualDevice

/// A synthetic ESP-IDF project as `idf.py build` leaves it for a Secure Boot V2 + flash encryption
/// (development mode) project with the seed's partition table at 0x10000, built from the real
/// Espressif bootloader and app: `build/` (flasher_args.json without the bootloader, as Secure
/// Boot builds write it, and with flash size `keep`), `sdkconfig` and the signing key beside it, a
/// production folder `line/` (manifest, NVS CSVs, registry) and blank virtual devices.
struct FakeIDFProject {
    let root: URL
    var build: URL { root.appendingPathComponent("build") }
    var line: URL { root.appendingPathComponent("line") }
    var manifest: String { line.appendingPathComponent("espforge.toml").path }
    var registry: String { line.appendingPathComponent("registry.sqlite").path }
    let key: SigningKey
    let keyDigest: [UInt8]
    let devices: [String]

    static let flasherArgs = """
        {
            "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "keep", "--flash_freq", "40m" ],
            "flash_settings" : { "flash_mode": "dio", "flash_size": "keep", "flash_freq": "40m" },
            "flash_files" : { "0x60000" : "fwapp.bin", "0x10000" : "partition_table/partition-table.bin" },
            "partition-table" : { "offset" : "0x10000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" },
            "app" : { "offset" : "0x60000", "file" : "fwapp.bin", "encrypted" : "false" },
            "extra_esptool_args" : { "after" : "no_reset", "before" : "default_reset", "stub" : true, "chip" : "esp32" }
        }
        """

    static func sdkconfig(signedBinaries: Bool, flashEncryption: Bool = true) -> String {
        func opt(_ name: String, _ on: Bool) -> String { on ? "CONFIG_\(name)=y" : "# CONFIG_\(name) is not set" }
        return """
            CONFIG_IDF_TARGET="esp32"
            CONFIG_ESP32_REV_MIN_FULL=300
            CONFIG_ESPTOOLPY_FLASHMODE="dio"
            CONFIG_ESPTOOLPY_FLASHFREQ="40m"
            CONFIG_ESPTOOLPY_FLASHSIZE="4MB"
            CONFIG_PARTITION_TABLE_CUSTOM=y
            CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"
            CONFIG_PARTITION_TABLE_OFFSET=0x10000
            CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME=y
            CONFIG_SECURE_BOOT=y
            CONFIG_SECURE_BOOT_V2_ENABLED=y
            \(opt("SECURE_BOOT_BUILD_SIGNED_BINARIES", signedBinaries))
            CONFIG_SECURE_BOOT_SIGNING_KEY="secure_boot_signing_key.pem"
            \(opt("SECURE_FLASH_ENC_ENABLED", flashEncryption))
            \(opt("SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT", flashEncryption))
            CONFIG_NVS_ENCRYPTION=y

            """
    }

    init(signedBinaries: Bool, flashEncryption: Bool = true, devices count: Int = 1) throws {
        let root = try TestEnvironment.temporaryDirectory("espforge-idfbuild")
        self.root = root
        let build = root.appendingPathComponent("build"), line = root.appendingPathComponent("line")
        let fm = FileManager.default
        for d in ["build/bootloader", "build/partition_table", "line", "devices"] {
            try fm.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true)
        }
        let key = try Scenarios.keyA()
        self.key = key
        keyDigest = try key.publicKey.keyDigest()
        let bootloader = signedBinaries ? try Scenarios.signedBootloader(key: key)
            : try Scenarios.trimmed(try ImageRetarget.retarget(try Scenarios.unsignedBootloader(), parameters: FlashParameters(size: "4MB"),
                                                               stripSignature: false))
        try Data(Self.flasherArgs.utf8).write(to: build.appendingPathComponent("flasher_args.json"))
        try Data(bootloader).write(to: build.appendingPathComponent("bootloader/bootloader.bin"))
        try Data(try Scenarios.app(key: signedBinaries ? key : nil)).write(to: build.appendingPathComponent("fwapp.bin"))
        try Data(try Scenarios.table()).write(to: build.appendingPathComponent("partition_table/partition-table.bin"))
        try Data(Self.sdkconfig(signedBinaries: signedBinaries, flashEncryption: flashEncryption).utf8)
            .write(to: root.appendingPathComponent("sdkconfig"))
        try Data(Scenarios.seedCSV.utf8).write(to: root.appendingPathComponent("partitions.csv"))
        try Data(key.pemRepresentation.utf8).write(to: root.appendingPathComponent("secure_boot_signing_key.pem"))

        let run = UUID().uuidString.prefix(8)
        var values = "id,serial_no\n"
        for i in 0..<(count + 1) { values += "SN-\(run)-\(i),SN-\(run)-\(i)\n" }
        try Data("key,type,encoding,value\ndevice,namespace,,\nserial_no,data,string,\n".utf8)
            .write(to: line.appendingPathComponent("nvs-config.csv"))
        try Data(values.utf8).write(to: line.appendingPathComponent("nvs-values.csv"))

        var devices: [String] = []
        for i in 0..<count {
            let path = root.appendingPathComponent("devices/dev\(i)").path
            let mac = Device.defaultMAC(seed: UInt64.random(in: 0...UInt64.max) &+ UInt64(i))
            try DeviceStore(directory: path).create(try Device.create(DeviceDescription(mac: mac)), force: false)
            devices.append(path)
        }
        self.devices = devices
    }

    /// Writes line/espforge.toml: `[build] dir = "../build"`, the given [signing] body and flash
    /// encryption mode, NVS, a final eFuse and the registry; `extra` is appended as it is.
    func writeManifest(signing: String, mode: String, extra: String = "") throws {
        let text = """
            version = 1

            [chip]
            type = "esp32"
            flash_size = "4MB"

            [build]
            dir = "../build"

            [signing]
            \(signing)

            [flash_encryption]
            mode = "\(mode)"
            release = false

            [nvs]
            config = "nvs-config.csv"
            values = "nvs-values.csv"
            keys_partition = "nvs_key"

            [efuse]
            burn = ["JTAG_DISABLE"]

            [registry]
            url = "registry.sqlite"

            """ + extra
        try Data(text.utf8).write(to: URL(fileURLWithPath: manifest))
    }

    func provision(_ device: Int = 0) throws -> ProcessResult {
        try Espforge.run(["provision", "--manifest", manifest, "--port", "virtual:" + devices[device]])
    }

    func block2(_ device: Int = 0) throws -> [UInt8] {
        let e = try DeviceStore(directory: devices[device]).load().efuses
        var digest: [UInt8] = []
        for w in e.blocks[2] { for i in 0..<4 { digest.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
        return digest
    }

    /// The device boots again with the build's own sdkconfig.
    func bootsAgain(_ device: Int = 0) throws -> BootOutcome {
        var d = try DeviceStore(directory: devices[device]).load()
        let text = try String(contentsOf: root.appendingPathComponent("sdkconfig"), encoding: .utf8)
        return BootSimulator(config: BootConfig(sdkconfig: try SDKConfig.parse(text))).boot(device: &d)
    }

    func untouched(_ device: Int = 0) throws -> Bool {
        try DeviceStore(directory: devices[device]).load().flash.read(0x1000, 4) == [0xFF, 0xFF, 0xFF, 0xFF]
    }

    func record(_ device: Int = 0) async throws -> DeviceRecord? {
        let mac = try DeviceStore(directory: devices[device]).load().description.mac
        let registry = try await openRegistry(url: registry)
        let r = try await registry.device(mac: mac)
        try await registry.close()
        return r
    }

    func remove() { try? FileManager.default.removeItem(at: root) }
}

func sha256hex(_ bytes: [UInt8]) -> String { hex(ContentHash.sha256.digest(bytes).bytes) }

@Suite("espforge provision: [build] dir and external signatures (CLI)")
struct ManifestLoadTests {
    @Test("[build] dir with signed binaries (presigned, on-chip): images from the build, a listed app overrides, digest from the signature block",
          fixtures)
    func buildDirPresigned() async throws {
        let p = try FakeIDFProject(signedBinaries: true)
        defer { p.remove() }
        // The manifest lists its own app (signed with the same key, minimum revision 3); the rest comes from the build.
        let override = try Scenarios.app(key: p.key, minRevision: 3)
        try Data(override).write(to: p.line.appendingPathComponent("app-v2.bin"))
        try p.writeManifest(signing: "presigned = true", mode: "on-chip",
                            extra: "\n[images.app]\nfile = \"app-v2.bin\"\noffset = 0x60000\n")
        let r = try p.provision()
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(try p.block2() == p.keyDigest, "BLOCK2 holds the digest of the key that signed the build")
        let boot = try p.bootsAgain()
        #expect(boot.booted, "\(boot.reason ?? "")\n\(boot.consoleText)")
        let record = try #require(try await p.record())
        #expect(record.status == .provisioned)
        #expect(record.facts.keyDigests["secure_boot_v2"] == hex(p.keyDigest), "the digest comes from the presigned images")
        #expect(record.facts.imageHashes["app"] == sha256hex(override), "the listed app wins over the build's")
        let bootloader = try [UInt8](Data(contentsOf: p.build.appendingPathComponent("bootloader/bootloader.bin")))
        #expect(record.facts.imageHashes["bootloader"] == sha256hex(bootloader), "the build's signed bootloader, as it is")
    }

    @Test("[build] dir with unsigned binaries, signed by espforge with the key (host encryption)", fixtures)
    func buildDirKeyHost() async throws {
        let p = try FakeIDFProject(signedBinaries: false)
        defer { p.remove() }
        try p.writeManifest(signing: "key = \"../secure_boot_signing_key.pem\"", mode: "host")
        let r = try p.provision()
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(try p.block2() == p.keyDigest)
        let e = try DeviceStore(directory: p.devices[0]).load().efuses
        #expect(e.isReadProtected(bit: 0), "host mode burned and protected the flash encryption key")
        let boot = try p.bootsAgain()
        #expect(boot.booted, "\(boot.reason ?? "")\n\(boot.consoleText)")
        #expect(try await p.record()?.status == .provisioned)
    }

    @Test("external signatures (digest-to-sign, signed elsewhere): provisioned, BLOCK2 holds the public key's digest; a wrong signature file is refused by name",
          fixtures)
    func externalSignatures() async throws {
        let p = try FakeIDFProject(signedBinaries: false, devices: 1)
        defer { p.remove() }
        // The HSM side: digest-to-sign for each image, a signature over it, the public key.
        var signatures: [String: [UInt8]] = [:]
        for (name, file) in [("bootloader", "bootloader/bootloader.bin"), ("app", "fwapp.bin")] {
            let image = try [UInt8](Data(contentsOf: p.build.appendingPathComponent(file)))
            let out = p.line.appendingPathComponent("\(name).digest").path
            let cli = try Espforge.run(["secure-boot", "digest-to-sign", p.build.appendingPathComponent(file).path, "-o", out])
            #expect(cli.status == 0, "\(cli.err)")
            let digest = SecureBootSigner.digestToSign(image: image, hash: .sha256).digest
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: out))) == digest.bytes, "the CLI's digest is the one signed")
            signatures[name] = try p.key.sign(contentDigest: digest)
        }
        try Data(p.key.publicKey.pemRepresentation.utf8).write(to: p.line.appendingPathComponent("signing_pub.pem"))
        try Data(try #require(signatures["bootloader"])).write(to: p.line.appendingPathComponent("bootloader.sig"))
        try Data(try #require(signatures["app"])).write(to: p.line.appendingPathComponent("app.sig"))

        // The bootloader's signature given for the app: refused before anything is written, naming the file.
        try p.writeManifest(signing: "public_key = \"signing_pub.pem\"\nbootloader_signature = \"bootloader.sig\"\napp_signature = \"bootloader.sig\"",
                            mode: "on-chip")
        let wrong = try p.provision()
        #expect(wrong.status == 1)
        #expect(wrong.err.contains("bootloader.sig") && wrong.err.contains("does not verify") && wrong.err.contains("fwapp.bin"), "\(wrong.err)")
        #expect(try p.untouched())
        // A signature by another key: also refused.
        let other = try Scenarios.keyB().sign(contentDigest: SecureBootSigner.digestToSign(
            image: try [UInt8](Data(contentsOf: p.build.appendingPathComponent("fwapp.bin"))), hash: .sha256).digest)
        try Data(other).write(to: p.line.appendingPathComponent("app-other.sig"))
        try p.writeManifest(signing: "public_key = \"signing_pub.pem\"\nbootloader_signature = \"bootloader.sig\"\napp_signature = \"app-other.sig\"",
                            mode: "on-chip")
        let otherKey = try p.provision()
        #expect(otherKey.status == 1 && otherKey.err.contains("app-other.sig"), "\(otherKey.err)")
        #expect(try p.untouched())

        try p.writeManifest(signing: "public_key = \"signing_pub.pem\"\nbootloader_signature = \"bootloader.sig\"\napp_signature = \"app.sig\"",
                            mode: "on-chip")
        let r = try p.provision()
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        #expect(try p.block2() == p.keyDigest)
        let boot = try p.bootsAgain()
        #expect(boot.booted, "\(boot.reason ?? "")\n\(boot.consoleText)")
        #expect(try await p.record()?.facts.keyDigests["secure_boot_v2"] == hex(p.keyDigest))
    }

    @Test("espforge init --build-dir, then provision with that manifest (plus [nvs])", fixtures)
    func initThenProvision() async throws {
        let p = try FakeIDFProject(signedBinaries: true)
        defer { p.remove() }
        let made = try Espforge.run(["init", "--build-dir", p.build.path, "-o", p.manifest])
        #expect(made.status == 0, "\(made.err)")
        let text = try String(contentsOfFile: p.manifest, encoding: .utf8)
            + "\n[nvs]\nconfig = \"nvs-config.csv\"\nvalues = \"nvs-values.csv\"\nkeys_partition = \"nvs_key\"\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: p.manifest))
        let r = try Espforge.run(["provision", "--manifest", p.manifest, "--registry", p.registry, "--port", "virtual:" + p.devices[0]])
        #expect(r.status == 0, "\(text)\n\(r.out)\n\(r.err)")
        #expect(try p.block2() == p.keyDigest)
        let e = try DeviceStore(directory: p.devices[0]).load().efuses
        #expect(int(e, "DISABLE_DL_ENCRYPT") == 1, "the final eFuses init derived from sdkconfig were burned")
        let boot = try p.bootsAgain()
        #expect(boot.booted, "\(boot.reason ?? "")\n\(boot.consoleText)")
    }

    @Test("manifest vs the build's sdkconfig: a flash encryption or signing mismatch is refused naming both files", fixtures)
    func mismatchRefused() throws {
        let p = try FakeIDFProject(signedBinaries: true, flashEncryption: false)
        defer { p.remove() }
        try p.writeManifest(signing: "presigned = true", mode: "on-chip")
        let r = try p.provision()
        #expect(r.status == 1)
        #expect(r.err.contains("espforge.toml") && r.err.contains("sdkconfig") && r.err.contains("CONFIG_SECURE_FLASH_ENC_ENABLED unset"), "\(r.err)")
        #expect(try p.untouched())

        // presigned over a build that does not sign its binaries.
        let u = try FakeIDFProject(signedBinaries: false, devices: 1)
        defer { u.remove() }
        try u.writeManifest(signing: "presigned = true", mode: "on-chip")
        let unsigned = try u.provision()
        #expect(unsigned.status == 1 && unsigned.err.contains("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES unset"), "\(unsigned.err)")
        // … and a listed image that says presigned but carries no signature is named.
        try u.writeManifest(signing: "presigned = true", mode: "on-chip",
                            extra: "\n[images.bootloader]\nfile = \"../build/bootloader/bootloader.bin\"\noffset = 0x1000\n"
                                + "[images.app]\nfile = \"../build/fwapp.bin\"\noffset = 0x60000\n")
        let listed = try u.provision()
        #expect(listed.status == 1 && listed.err.contains("bootloader.bin") && listed.err.contains("no valid signature block"), "\(listed.err)")
        #expect(try u.untouched())

        // A [build] dir that does not exist.
        try Data("version = 1\n[chip]\nflash_size = \"4MB\"\n[build]\ndir = \"nowhere\"\n".utf8).write(to: URL(fileURLWithPath: u.manifest))
        let missing = try u.provision()
        #expect(missing.status == 1 && missing.err.contains("nowhere"), "\(missing.err)")
    }
}
