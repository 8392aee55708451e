import Diagnostics
import ESPCore
import Foundation
import Testing
import TestSupport
@testable import Manifest

/// `preflight --build-dir` (Diagnostics' BuildDirectory) and the manifest / `provision`
/// (Manifest's IDFBuild) read one build folder's sdkconfig through one lookup.
@Suite("one sdkconfig lookup for every build-folder reader")
struct BuildFolderSDKConfigTests {
    static let other = """
        CONFIG_IDF_TARGET="esp32"
        CONFIG_ESPTOOLPY_FLASHSIZE="4MB"
        CONFIG_PARTITION_TABLE_OFFSET=0x8000
        """

    static func readAbsolute(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    @Test func bothReadersPickTheProjectSdkconfigOverOnesInsideTheBuild() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        // A stale configuration inside the build folder (both places the old preflight preferred).
        try FileManager.default.createDirectory(at: p.build.appendingPathComponent("config"), withIntermediateDirectories: true)
        try Data(Self.other.utf8).write(to: p.build.appendingPathComponent("sdkconfig"))
        try Data(Self.other.utf8).write(to: p.build.appendingPathComponent("config/sdkconfig"))

        let manifestSide = try IDFBuild.read(readFile: p.reader)
        let preflightSide = try BuildDirectory.load(p.build.path, read: Self.readAbsolute)
        #expect(manifestSide.sdkconfigFile == "../sdkconfig")
        #expect(preflightSide.sdkconfigPath == p.build.path + "/../sdkconfig")
        #expect(manifestSide.flashSize == 8 << 20)
        #expect(manifestSide.sdkconfig["CONFIG_ESPTOOLPY_FLASHSIZE"] == "8MB")
        #expect(preflightSide.plan.sdkconfig?["CONFIG_ESPTOOLPY_FLASHSIZE"] == "8MB")
        #expect(preflightSide.plan.partitionTableOffset == 0xc000)

        // Without the project's sdkconfig both fall back to the same file inside the build.
        try FileManager.default.removeItem(at: p.root.appendingPathComponent("sdkconfig"))
        let m2 = try IDFBuild.read(readFile: p.reader)
        let d2 = try BuildDirectory.load(p.build.path, read: Self.readAbsolute)
        #expect(m2.sdkconfigFile == "sdkconfig")
        #expect(d2.sdkconfigPath == p.build.path + "/sdkconfig")
        #expect(m2.flashSize == 4 << 20 && d2.plan.sdkconfig?["CONFIG_ESPTOOLPY_FLASHSIZE"] == "4MB")
    }

    @Test func projectDescriptionNamesTheProjectForBothReaders() throws {
        let p = try SyntheticProject()
        defer { p.remove() }
        // The project lives in a sibling folder of the build (idf.py -B elsewhere).
        let project = p.root.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: project, withIntermediateDirectories: true)
        try Data(SyntheticProject.sdkconfig.replacingOccurrences(of: "\"8MB\"", with: "\"16MB\"").utf8)
            .write(to: project.appendingPathComponent("sdkconfig"))
        let pd = #"{"project_path": "\#(project.path)", "build_dir": "\#(p.build.path)"}"#
        try Data(pd.utf8).write(to: p.build.appendingPathComponent("project_description.json"))

        let m = try IDFBuild.read(readFile: p.reader)
        let d = try BuildDirectory.load(p.build.path, read: Self.readAbsolute)
        #expect(m.sdkconfigFile == "../src/sdkconfig")
        #expect(d.sdkconfigPath == p.build.path + "/../src/sdkconfig")
        #expect(m.flashSize == 16 << 20 && d.plan.sdkconfig?["CONFIG_ESPTOOLPY_FLASHSIZE"] == "16MB")
    }

    /// `provision` builds the boot simulator's configuration from the values IDFBuild read; it
    /// used to parse the found file again as text, so a build with only `config/sdkconfig.json`
    /// provisioned with Secure Boot and flash encryption off while preflight saw them on.
    @Test func provisionAndPreflightReadTheSameConfigurationFromSdkconfigJSON() throws {
        let p = try SyntheticProject(sdkconfig: nil)
        defer { p.remove() }
        try FileManager.default.createDirectory(at: p.build.appendingPathComponent("config"), withIntermediateDirectories: true)
        let json = """
            {"IDF_TARGET": "esp32", "ESPTOOLPY_FLASHSIZE": "4MB", "PARTITION_TABLE_OFFSET": 49152,
             "SECURE_BOOT": true, "SECURE_BOOT_V2_ENABLED": true, "SECURE_FLASH_ENC_ENABLED": true,
             "SECURE_FLASH_ENCRYPTION_MODE_RELEASE": false, "SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC": true,
             "SECURE_BOOT_ALLOW_JTAG": true}
            """
        try Data(json.utf8).write(to: p.build.appendingPathComponent("config/sdkconfig.json"))

        let build = try IDFBuild.read(readFile: p.reader)
        let preflight = try BuildDirectory.load(p.build.path, read: Self.readAbsolute)
        #expect(build.sdkconfigFile == "config/sdkconfig.json")
        #expect(preflight.sdkconfigPath == p.build.path + "/config/sdkconfig.json")
        #expect(build.sdkconfig == preflight.plan.sdkconfig?.values)
        #expect(build.sdkconfigValues.values == build.sdkconfig)

        let simulator = try SimulatorSDKConfig(values: build.sdkconfigValues)
        #expect(simulator.secureBootV2 && simulator.flashEncryption && !simulator.releaseMode)
        #expect(simulator.partitionTableOffset == 0xC000 && preflight.plan.partitionTableOffset == 0xC000)
        #expect(simulator.uartAllowDecrypt && simulator.allowJTAG)
        #expect(preflight.plan.sdkconfig?.secureBootV2 == true && preflight.plan.sdkconfig?.flashEncryption == true)
    }

    /// The same for the text form, with the rules the three parsers used to disagree on
    /// (CR line ends, escaped quotes, spaces around `=`).
    @Test func provisionAndPreflightReadTheSameConfigurationFromText() throws {
        let text = "# Espressif IoT Development Framework (ESP-IDF) 5.1.2 Project Configuration\r"
            + "CONFIG_IDF_TARGET=\"esp32\"\rCONFIG_ESPTOOLPY_FLASHSIZE = \"8MB\"\r"
            + "CONFIG_PARTITION_TABLE_OFFSET=0xc000\rCONFIG_SECURE_BOOT=y\rCONFIG_SECURE_BOOT_V2_ENABLED=y\r"
            + "CONFIG_SECURE_BOOT_SIGNING_KEY=\"keys/\\\"odd\\\".pem\"\r"
            + "CONFIG_SECURE_FLASH_ENC_ENABLED=y\r# CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC is not set\r"
        let p = try SyntheticProject(sdkconfig: text)
        defer { p.remove() }
        let build = try IDFBuild.read(readFile: p.reader)
        let preflight = try BuildDirectory.load(p.build.path, read: Self.readAbsolute)
        #expect(build.sdkconfig == preflight.plan.sdkconfig?.values)
        #expect(build.flashSize == 8 << 20 && build.signingKey == #"keys/"odd".pem"#)
        let simulator = try SimulatorSDKConfig(values: build.sdkconfigValues)
        #expect(simulator == (try SimulatorSDKConfig.parse(text)))
        #expect(simulator.idfVersion == "5.1.2" && simulator.secureBootV2 && simulator.flashEncryption)
        #expect(!simulator.uartAllowEncrypt && simulator.partitionTableOffset == 0xC000)
        // A bad value the simulator needs is reported at its line of that file.
        var bad = build.sdkconfigValues
        bad.values["CONFIG_PARTITION_TABLE_OFFSET"] = "zz"
        #expect(throws: SimulatorSDKConfigError.badValue(name: "CONFIG_PARTITION_TABLE_OFFSET", value: "zz", line: 4)) {
            try SimulatorSDKConfig(values: bad)
        }
    }

    @Test func candidateOrderIsDocumentedOrder() {
        #expect(SDKConfigLookup.candidates(projectDescription: nil).map(\.path)
                == ["../sdkconfig", "sdkconfig", "config/sdkconfig", "config/sdkconfig.json"])
        let pd = Array(#"{"project_path": "/p/app", "build_dir": "/p/app/out/b"}"#.utf8)
        #expect(SDKConfigLookup.candidates(projectDescription: pd).map(\.path)
                == ["../../sdkconfig", "../sdkconfig", "sdkconfig", "config/sdkconfig", "config/sdkconfig.json"])
    }
}
