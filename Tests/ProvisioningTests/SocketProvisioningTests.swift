import BootSimulator
import EFuse
import Flasher
import Foundation
import Registry
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// The line's devices served by `espforge device serve` (one process each) and provisioned over
/// socket:// through the flasher, as real boards on serial ports are: the loader for identity,
/// eFuses and writes, the console for the first boot.
struct ServedLine {
    let line: Line
    let servers: [DeviceServerProcess]
    let targets: [LoaderTarget]

    /// `rememberSDKConfig` false: the folders have no sdkconfig (a plain `device create`), so the
    /// served devices infer the bootloader's options from their flash when they boot.
    init(_ line: Line, faults: String? = nil, seed: UInt64 = 1, rememberSDKConfig: Bool = true) throws {
        self.line = line
        var servers: [DeviceServerProcess] = []
        var targets: [LoaderTarget] = []
        var options = LoaderLinkOptions()
        options.session.baud = 921_600
        options.session.stub = try StubImage.locate().map { try StubImage.parse(json: Array(try Data(contentsOf: URL(fileURLWithPath: $0))), source: $0) }
        options.quietSeconds = 1
        if faults != nil { options.session.timeout = 1 }   // recover from lost frames sooner
        for t in line.targets {
            // The served device boots with the sdkconfig remembered in its folder.
            if rememberSDKConfig {
                try line.sdk.text.write(toFile: t.store.directory + "/sdkconfig", atomically: true, encoding: .utf8)
            }
            let extra = faults.map { ["--faults", $0, "--seed", String(seed)] } ?? []
            let server = try DeviceServerProcess(state: t.store.directory, extra: extra)
            servers.append(server)
            targets.append(LoaderTarget(port: server.url, options: options))
        }
        self.servers = servers
        self.targets = targets
    }

    func provision(_ registry: any DeviceRegistry, job: ProvisioningJob? = nil, preflightRules: Bool = true) async throws -> [ProvisionResult] {
        try await line.provision(registry, targets: targets, job: job, preflightRules: preflightRules)
    }

    /// Stops the servers (they save on SIGTERM) and loads the devices.
    func stopAndLoad() throws -> [Device] {
        for s in servers { s.stop() }
        return try line.targets.map { try DeviceStore(directory: $0.store.directory).load() }
    }
}

@Suite("Provisioning over socket:// (served virtual devices)", .serialized)
struct SocketProvisioningTests {
    @Test("provisioned end to end through the loader; the first boot is watched on the console",
          fixtures, arguments: [ProvisioningJob.EncryptionMode.host, .onChip])
    func endToEnd(mode: ProvisioningJob.EncryptionMode) async throws {
        let line = try Line(count: 2, mode: mode)
        defer { line.cleanup() }
        let served = try ServedLine(line)
        let registry = try await Backend.sqlite.open(line.dir)
        let results = try await served.provision(registry)
        for r in results {
            #expect(r.ok, "\(r.port): \(r.failedStep ?? "") \(r.reason ?? "") \(r.diagnosis ?? "")")
            #expect(r.bootedPartition == "ota_0")
        }
        #expect(Set(results.compactMap(\.identity)).count == 2)
        for device in try served.stopAndLoad() {
            let e = device.efuses
            #expect(int(e, "ABS_DONE_1") == 1 && int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1)
            #expect(int(e, "JTAG_DISABLE") == 1 && int(e, "DISABLE_DL_DECRYPT") == 1)
            #expect(e.isReadProtected(bit: 0), "the flash encryption key is read-protected")
            #expect(device.stats.total.firmwareRuns == 1, "one first boot, started over the loader")
            #expect(device.stats.total.firmwareSeconds > 0 && device.stats.total.firmwareSeconds < device.stats.total.virtualSeconds)
            if mode == .onChip { #expect(device.stats.total.efusePrograms > 0, "the bootloader's burns are counted") }
            // In host mode the chip never encrypted anything itself: the bootloader found ciphertext.
            var copy = device
            let again = BootSimulator(config: BootConfig(sdkconfig: line.sdk)).boot(device: &copy)
            #expect(again.booted && again.encryptedRegions.isEmpty, "\(again.reason ?? "")")
            let record = try #require(try await registry.device(mac: device.description.mac))
            #expect(record.status == .provisioned)
        }
        try await registry.close()
    }

    @Test("host mode over socket:// on devices with no remembered sdkconfig: the first boot infers the table offset",
          fixtures)
    func hostModeWithoutSDKConfig() async throws {
        let line = try Line(count: 2, mode: .host)
        defer { line.cleanup() }
        let served = try ServedLine(line, rememberSDKConfig: false)
        let registry = try await Backend.sqlite.open(line.dir)
        let results = try await served.provision(registry)
        for r in results {
            #expect(r.ok, "\(r.port): \(r.failedStep ?? "") \(r.reason ?? "") \(r.diagnosis ?? "")")
            #expect(r.bootedPartition == "ota_0")
        }
        for device in try served.stopAndLoad() {
            #expect(int(device.efuses, "ABS_DONE_1") == 1, "the signed bootloader enabled Secure Boot V2")
        }
        try await registry.close()
    }

    @Test("the seed's altered bootloader over socket://: the console shows the failure, the doctor names it, no final eFuse",
          fixtures)
    func seedBootloaderOverSocket() async throws {
        let line = try Line(count: 1, mode: .onChip, bootloader: try Scenarios.seedBootloader(key: try Scenarios.keyA(), rehash: false))
        defer { line.cleanup() }
        let served = try ServedLine(line)
        let registry = try await Backend.sqlite.open(line.dir)
        var job = line.job
        job.bootTimeout = 60   // the watch ends long before: the console stops and the doctor knows why
        let r = try #require(try await served.provision(registry, job: job, preflightRules: false).first)
        #expect(!r.ok && r.failedStep == "first-boot", "\(r.failedStep ?? "") \(r.reason ?? "")")
        #expect(r.reason?.contains("console stopped") == true || r.reason?.contains("boot loop") == true, "\(r.reason ?? "")")
        let diagnosis = try #require(r.diagnosis, "the doctor names a cause")
        #expect(diagnosis.hasPrefix("DR"), "\(diagnosis)")
        let device = try #require(try served.stopAndLoad().first)
        #expect(int(device.efuses, "JTAG_DISABLE") == 0 && int(device.efuses, "DISABLE_DL_DECRYPT") == 0)
        let record = try #require(try await registry.device(mac: device.description.mac))
        #expect(record.status == .failed && record.failure?.contains("doctor") == true, "\(record.failure ?? "")")
        #expect(try await !registry.steps(mac: device.description.mac).contains { $0.step == "final-efuses" })
        try await registry.close()
    }

    @Test("transport faults (lost and flipped bytes, stalls, dropped connections): every device still provisioned once",
          fixtures, arguments: ["drop=0.00001,flip=0.00001,stall=0.01:30", "disconnect-after=300000"])
    func transportFaults(spec: String) async throws {
        let seed = testSeed()
        let line = try Line(count: 2, mode: .host)
        defer { line.cleanup() }
        let served = try ServedLine(line, faults: spec, seed: seed)
        let registry = try await Backend.sqlite.open(line.dir)
        let results = try await served.provision(registry)
        for r in results {
            #expect(r.ok, "seed \(seed), \(spec): \(r.port): \(r.failedStep ?? "") \(r.reason ?? "")")
        }
        #expect(Set(results.compactMap(\.identity)).count == 2, "seed \(seed)")
        var injected = 0
        for device in try served.stopAndLoad() {
            let f = device.stats.faults
            injected += f.droppedBytes + f.flippedBits + f.stalls + f.disconnects
            #expect(int(device.efuses, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1 && int(device.efuses, "JTAG_DISABLE") == 1,
                    "seed \(seed)")
            var copy = device
            #expect(BootSimulator(config: BootConfig(sdkconfig: line.sdk)).boot(device: &copy).booted, "seed \(seed): the written images survive the faults")
        }
        #expect(injected > 0, "seed \(seed): the faults were really injected")
        try await registry.close()
    }
}
