import BootSimulator
import EFuse
import Foundation
import NVS
import Partitions
import Registry
import SecureBoot
import Testing
import TestSupport
import VirtualDevice
@testable import Provisioning

/// SQLite always; PostgreSQL when ESPFORGE_TEST_POSTGRES_URL names a server (scripts/test starts
/// one) and always in CI, where a missing URL fails the PostgreSQL cases.
enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres
    static var postgresURL: String? {
        ProcessInfo.processInfo.environment["ESPFORGE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }
    static var enabled: [Backend] { postgresURL != nil || TestEnvironment.isCI ? [.sqlite, .postgres] : [.sqlite] }
    var testDescription: String { rawValue }

    func open(_ dir: URL) async throws -> any DeviceRegistry {
        switch self {
        case .sqlite: return try await openRegistry(url: dir.appendingPathComponent("registry.sqlite").path)
        case .postgres:
            guard let url = Self.postgresURL else {
                throw TestSupportError.missing("ESPFORGE_TEST_POSTGRES_URL (run ./scripts/test, which starts a PostgreSQL server)")
            }
            return try await openRegistry(url: url)
        }
    }
}

let fixtures = Testing.ConditionTrait.enabled(if: TestEnvironment.fixturesOrCI, "needs ../shared/fixtures (always required in CI)")

/// A line of `count` blank virtual devices and a job built from the real Espressif bootloader and app.
struct Line {
    let dir: URL
    let job: ProvisioningJob
    let sdk: SDKConfig
    let targets: [VirtualTarget]
    let keyDigest: [UInt8]

    static let nvsConfig = "key,type,encoding,value\ndevice,namespace,,\nserial_no,data,string,\nmodel,data,string,test\n"

    init(count: Int, mode: ProvisioningJob.EncryptionMode, bootloader: [UInt8]? = nil) throws {
        dir = try TestEnvironment.temporaryDirectory("espforge-provision")
        let key = try Scenarios.keyA()
        keyDigest = try key.publicKey.keyDigest()
        let table = try Scenarios.table()
        let parsed = try PartitionTable.parse(binary: table)
        let run = UUID().uuidString.prefix(8)
        var values = "id,serial_no\n"
        for i in 0..<(count + 1) { values += "SN-\(run)-\(i),SN-\(run)-\(i)\n" }
        let devices = try NVSPerDevice.devices(config: try NVSPerDevice.config(Self.nvsConfig), values: values).devices
        job = ProvisioningJob(
            images: [.init(name: "bootloader", offset: 0x1000, bytes: try bootloader ?? Scenarios.signedBootloader(key: key)),
                     .init(name: "partition_table", offset: 0x10000, bytes: table),
                     .init(name: "app", offset: 0x60000, bytes: try Scenarios.app(key: key))],
            partitionTableOffset: 0x10000, partitions: parsed.table.entries, mode: mode, release: false,
            manifestHash: String(repeating: "ab", count: 32), secureBootDigest: keyDigest,
            identityPool: "pool-\(run)", identities: devices, nvsPartition: "nvs", nvsKeysPartition: "nvs_key",
            encryptNVS: true, finalBurn: ["JTAG_DISABLE", "DISABLE_DL_DECRYPT"], finalWriteProtect: [],
            minRevision: 3, flashSize: 4 << 20, station: "test")
        var sdk = SDKConfig.secure(release: false, partitionTableOffset: 0x10000)
        sdk.flashEncryption = mode != .none
        self.sdk = sdk
        var targets: [VirtualTarget] = []
        for i in 0..<count {
            let path = dir.appendingPathComponent("dev\(i)").path
            let mac = Device.defaultMAC(seed: UInt64.random(in: 0...UInt64.max) &+ UInt64(i))
            try DeviceStore(directory: path).create(try Device.create(DeviceDescription(mac: mac)), force: false)
            targets.append(VirtualTarget(directory: path))
        }
        self.targets = targets
    }

    /// Provisions the line's devices (or `targets`, e.g. the same devices over socket://) in parallel.
    func provision(_ registry: any DeviceRegistry, targets: [any ProvisioningTarget]? = nil, job: ProvisioningJob? = nil,
                   resume: Bool = false, preflightRules: Bool = true) async throws -> [ProvisionResult] {
        var p = Provisioner(job: job ?? self.job, registry: registry, sdkconfig: sdk, resume: resume)
        p.rngSeed = 7
        p.preflightRules = preflightRules
        try await p.loadPool()
        let provisioner = p
        let all: [any ProvisioningTarget] = targets ?? self.targets
        return await provisioner.provision(all: all).sorted { $0.port < $1.port }
    }

    func cleanup() { try? FileManager.default.removeItem(at: dir) }
}

func int(_ e: EFuseArray, _ name: String) -> UInt64 { Provisioner.int(e, name) }

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

@Suite("Provisioning pipeline")
struct ProvisioningTests {
    @Test("virtual devices provisioned end to end (host and on-chip encryption)", fixtures,
          arguments: Backend.enabled, [ProvisioningJob.EncryptionMode.host, .onChip])
    func endToEnd(backend: Backend, mode: ProvisioningJob.EncryptionMode) async throws {
        let line = try Line(count: 2, mode: mode)
        defer { line.cleanup() }
        let registry = try await backend.open(line.dir)
        let results = try await line.provision(registry)
        for r in results { #expect(r.ok, "\(r.port): \(r.failedStep ?? "") \(r.reason ?? "") \(r.diagnosis ?? "")") }
        #expect(Set(results.compactMap(\.identity)).count == 2, "two devices, two identities: \(results.map(\.identity))")

        for t in line.targets {
            var device = try t.load()
            let e = device.efuses
            #expect(int(e, "ABS_DONE_1") == 1)
            #expect(int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1)
            #expect(int(e, "JTAG_DISABLE") == 1 && int(e, "DISABLE_DL_DECRYPT") == 1)
            #expect(e.isReadProtected(bit: 0) && e.isWriteProtected(bit: 7))
            var digest: [UInt8] = []
            for w in e.blocks[2] { for i in 0..<4 { digest.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
            #expect(digest == line.keyDigest)
            // The provisioned device boots again: flash is ciphertext under its own key.
            let again = BootSimulator(config: BootConfig(sdkconfig: line.sdk)).boot(device: &device)
            #expect(again.booted, "\(again.reason ?? "")\n\(again.consoleText)")
            #expect(device.flash.read(0x1000, 4) != [0xE9], "the bootloader is stored encrypted")

            // Registry: provisioned, identity, every step ok, no key material anywhere.
            let mac = device.description.mac
            let record = try #require(try await registry.device(mac: mac))
            #expect(record.status == .provisioned)
            #expect(record.identity != nil)
            #expect(record.facts.keyDigests["secure_boot_v2"] == hex(line.keyDigest))
            #expect(record.efuseSummary?["JTAG_DISABLE"] == "1")
            let steps = try await registry.steps(mac: mac)
            let okSteps = steps.filter { $0.outcome == .ok }.map(\.step)
            #expect(okSteps == ["identify", "claim", "build-nvs", "preflight", "write", "first-boot", "verify", "final-efuses", "record"])
            let key = Provisioner.keyBytes(e)
            let dump = String(decoding: try JSONEncoder().encode(record), as: UTF8.self)
                + String(decoding: try JSONEncoder().encode(steps), as: UTF8.self)
            #expect(!dump.lowercased().contains(hex(key)) && !dump.lowercased().contains(hex(key.reversed())))
        }
        let status = try await registry.poolStatus(pool: line.job.identityPool)
        #expect(status.claimed == 2 && status.total == 3)

        // Running again on provisioned devices with --resume changes nothing.
        let again = try await line.provision(registry, resume: true)
        #expect(again.allSatisfy { $0.ok && $0.state == .skipped && $0.resumedAfter == "record" })
        #expect(again.map(\.identity) == results.map(\.identity))
        try await registry.close()
    }

    @Test("two stations provision from one pool at once: no identity twice, none skipped", fixtures, arguments: Backend.enabled)
    func twoStations(backend: Backend) async throws {
        let line = try Line(count: 4, mode: .host)
        defer { line.cleanup() }
        let a = try await backend.open(line.dir)
        let b = try await backend.open(line.dir)
        var pa = Provisioner(job: line.job, registry: a, sdkconfig: line.sdk)
        var pb = Provisioner(job: line.job, registry: b, sdkconfig: line.sdk)
        pa.rngSeed = 1
        pb.rngSeed = 2
        try await pa.loadPool()
        try await pb.loadPool()
        let (stationA, stationB) = (pa, pb)
        let results = await withTaskGroup(of: ProvisionResult.self) { group in
            for (i, t) in line.targets.enumerated() {
                group.addTask { await (i % 2 == 0 ? stationA : stationB).provision(t) }
            }
            var out: [ProvisionResult] = []
            for await r in group { out.append(r) }
            return out
        }
        let failures = results.filter { !$0.ok }.map { "\($0.port): \($0.reason ?? "")" }
        #expect(failures.isEmpty, "\(failures)")
        let ids = results.compactMap(\.identity)
        #expect(Set(ids).count == 4)
        // Claims follow the CSV order: the first four identities, none skipped.
        #expect(Set(ids) == Set(line.job.identities.prefix(4).map(\.id)), "\(ids)")
        let status = try await a.poolStatus(pool: line.job.identityPool)
        #expect(status.claimed == 4)
        try await a.close()
        try await b.close()
    }

    @Test("the seed's altered bootloader: stopped at first boot, no final eFuse, doctor's diagnosis recorded", fixtures)
    func seedBootloaderFails() async throws {
        let line = try Line(count: 1, mode: .onChip, bootloader: try Scenarios.seedBootloader(key: try Scenarios.keyA(), rehash: false))
        defer { line.cleanup() }
        let registry = try await Backend.sqlite.open(line.dir)
        // With the PF rules (the default) preflight already refuses it, before anything is written.
        let caught = try #require(try await line.provision(registry).first)
        #expect(!caught.ok && caught.failedStep == "preflight", "\(caught.failedStep ?? "") \(caught.reason ?? "")")
        #expect(try line.targets[0].load().flash.read(0x1000, 4) == [0xFF, 0xFF, 0xFF, 0xFF])
        // Without them, the first boot fails and the doctor explains it.
        let results = try await line.provision(registry, preflightRules: false)
        let r = try #require(results.first)
        #expect(!r.ok && r.failedStep == "first-boot", "\(r.failedStep ?? "") \(r.reason ?? "")")
        #expect(r.diagnosis != nil, "the doctor names a cause")
        let device = try line.targets[0].load()
        #expect(int(device.efuses, "JTAG_DISABLE") == 0 && int(device.efuses, "DISABLE_DL_DECRYPT") == 0)
        let record = try #require(try await registry.device(mac: device.description.mac))
        #expect(record.status == .failed)
        #expect(record.failure?.contains("first-boot") == true && record.failure?.contains("doctor") == true, "\(record.failure ?? "")")
        let steps = try await registry.steps(mac: device.description.mac)
        #expect(!steps.contains { $0.step == "final-efuses" })
        #expect(steps.contains { $0.step == "first-boot" && $0.outcome == .failed })
        try await registry.close()
    }

    @Test("a serial port that does not exist fails at connect, naming the port, and nothing is recorded")
    func missingSerialPort() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-provision")
        defer { try? FileManager.default.removeItem(at: dir) }
        let registry = try await Backend.sqlite.open(dir)
        let job = ProvisioningJob(images: [], partitionTableOffset: 0x8000, partitions: [], mode: .none, release: false,
                                  manifestHash: "", secureBootDigest: nil, identityPool: "p", identities: [], flashSize: 4 << 20)
        let port = dir.path + "/ttyUSB-missing"
        let r = await Provisioner(job: job, registry: registry, sdkconfig: .init())
            .provision(LoaderTarget(port: port, options: LoaderLinkOptions()))
        #expect(!r.ok && r.failedStep == "connect" && r.mac == nil)
        #expect(r.reason?.contains(port) == true, "\(r.reason ?? "")")
        #expect(try await registry.devices().isEmpty)
        try await registry.close()
    }
}

@Suite("espforge demo and provision (CLI)")
struct ProvisionCLITests {
    @Test("espforge demo --devices 2 provisions both and prints the summary")
    func demo() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-demo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        let r = try Espforge.run(["demo", "--devices", "2", "--dir", out])
        #expect(r.status == 0, "\(r.out)\n\(r.err)")
        let table = r.out.split(separator: "\n").filter { $0.hasPrefix("virtual:") }
        #expect(table.count == 2 && table.allSatisfy { $0.contains("  ok  ") }, "\(r.out)")
        #expect(r.out.contains("registry:") && r.out.contains("device inspect --state"))
        let list = try Espforge.run(["registry", "list", "--registry", out + "/registry.sqlite", "--json"])
        #expect(list.status == 0, "\(list.err)")
        #expect(list.out.components(separatedBy: "\"provisioned\"").count - 1 == 2, "\(list.out)")
        let boot = try Espforge.run(["device", "boot", "--state", out + "/devices/dev1", "--json"])
        #expect(boot.status == 0 && boot.out.contains("\"ota_0\""), "\(boot.out)\n\(boot.err)")
    }

    @Test("a failing device: exit 1 naming it and why; --json gives one event per line")
    func failingDeviceAndJSON() throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        var env = ProcessInfo.processInfo.environment
        env["ESPFORGE_TEST_CRASH_AFTER"] = "identify"
        _ = try ProcessRunner.run(Espforge.path, ["demo", "--devices", "2", "--dir", out], environment: env)
        // A bootloader that is no ESP image: preflight stops the devices before anything is written.
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: out + "/bootloader.bin"))
        let r = try Espforge.run(["provision", "--manifest", out + "/espforge.toml", "--resume", "--json",
                                  "--port", "virtual:" + out + "/devices/dev1", "--port", "/dev/ttyUSB9"])
        #expect(r.status == 1)
        #expect(r.err.contains("devices/dev1") && r.err.contains("preflight"), "\(r.err)")
        #expect(r.err.contains("/dev/ttyUSB9") && r.err.contains("connect"), "\(r.err)")
        let lines = r.out.split(separator: "\n")
        #expect(lines.count > 4)
        for l in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(l.utf8))) is [String: Any], "not one JSON object: \(l)")
        }
        let device = try DeviceStore(directory: out + "/devices/dev1").load()
        #expect(device.flash.read(0x1000, 4) == [0xFF, 0xFF, 0xFF, 0xFF], "nothing written")
    }

    @Test("boards on serial lines (virtual ports with the DTR/RTS auto-reset circuit): reset into the loader, written through the stub, EN pulse boots, console watched",
          arguments: ["lines=auto", "lines=auto&faults=drop=0.00002,flip=0.00002&seed=SEED"])
    func serialLines(options: String) throws {
        let seed = testSeed() % 100_000
        let dir = try TestEnvironment.temporaryDirectory("espforge-serial")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        var env = ProcessInfo.processInfo.environment
        env["ESPFORGE_TEST_CRASH_AFTER"] = "identify"   // the line's files and blank devices, nothing provisioned
        _ = try ProcessRunner.run(Espforge.path, ["demo", "--devices", "2", "--dir", out, "--mode", "on-chip"], environment: env)
        // Each board its own seed: at these rates a board's exchange meets a few faults, and some seeds
        // meet none (36552 did, failing a CI run); the test needs at least one of two independent seeds.
        let query = { (i: Int) in options.replacingOccurrences(of: "SEED", with: String(seed + UInt64(i))) }
        let r = try Espforge.run(["provision", "--manifest", out + "/espforge.toml"]
                                 + (1...2).flatMap { ["--port", "virtual:\(out)/devices/dev\($0)?\(query($0))"] })
        #expect(r.status == 0, "seed \(seed): \(r.out)\n\(r.err)")
        #expect(r.out.contains("first-boot: ok — booted ota_0"), "\(r.out)")
        var faulted = 0
        for i in 1...2 {
            let device = try DeviceStore(directory: out + "/devices/dev\(i)").load()
            #expect(device.stats.total.firmwareRuns == 1, "booted once, by the EN pulse")
            #expect(int(device.efuses, "ABS_DONE_1") == 1 && int(device.efuses, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 1)
            if device.stats.faults != FaultCounters() { faulted += 1 }
        }
        if options.contains("faults") { #expect(faulted > 0, "seeds \(seed), \(seed + 1): faults were injected") }
        let list = try Espforge.run(["registry", "list", "--registry", out + "/registry.sqlite", "--json"])
        #expect(list.out.components(separatedBy: "\"provisioned\"").count - 1 == 2, "\(list.out)")
    }

    @Test("a process killed after a step (exit 137) is completed by --resume without double claims", arguments: ["claim", "write", "first-boot", "verify"])
    func resumeAfterCrash(step: String) throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-resume")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        var env = ProcessInfo.processInfo.environment
        env["ESPFORGE_TEST_CRASH_AFTER"] = step
        let crashed = try ProcessRunner.run(Espforge.path, ["demo", "--devices", "2", "--dir", out, "--mode", "on-chip"], environment: env)
        #expect(crashed.status == 137, "\(crashed.out)\n\(crashed.err)")
        let resumed = try Espforge.run(["provision", "--manifest", out + "/espforge.toml", "--resume",
                                        "--port", "virtual:" + out + "/devices/dev1", "--port", "virtual:" + out + "/devices/dev2"])
        #expect(resumed.status == 0, "\(resumed.out)\n\(resumed.err)")
        let shown = try Espforge.run(["registry", "pool", "--registry", out + "/registry.sqlite", "nvs-values.csv"])
        #expect(shown.out.contains("2 identities, 2 claimed"), "no identity claimed twice or skipped: \(shown.out)\(shown.err)")
        let list = try Espforge.run(["registry", "list", "--registry", out + "/registry.sqlite", "--json"])
        #expect(list.out.components(separatedBy: "\"provisioned\"").count - 1 == 2, "\(list.out)")
        for i in 1...2 {
            let boot = try Espforge.run(["device", "boot", "--state", out + "/devices/dev\(i)", "--json"])
            #expect(boot.status == 0 && boot.out.contains("\"ota_0\""), "\(boot.out)\n\(boot.err)")
        }
    }

    @Test("SIGKILL at a random point of `provision`, then --resume: every device provisioned once, no identity lost or doubled",
          arguments: [0, 1, 2, 3])
    func sigkillDrill(round: Int) throws {
        let seed = testSeed() &+ UInt64(round)
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("espforge-kill")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("demo").path
        // Set the line up (files, devices, registry) and stop right after the first step.
        var env = ProcessInfo.processInfo.environment
        env["ESPFORGE_TEST_CRASH_AFTER"] = "identify"
        let setup = try ProcessRunner.run(Espforge.path, ["demo", "--devices", "3", "--dir", out, "--mode", round % 2 == 0 ? "host" : "on-chip"], environment: env)
        #expect(setup.status == 137, "seed \(seed): \(setup.err)")
        let ports = (1...3).flatMap { ["--port", "virtual:\(out)/devices/dev\($0)"] }

        // Kill the provisioning process at a random moment.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Espforge.path)
        p.arguments = ["provision", "--manifest", out + "/espforge.toml", "--resume"] + ports
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let delay = 0.02 + Double(rng.next() % 250) / 1000.0   // a whole run takes ~0.3 s (debug build)
        Thread.sleep(forTimeInterval: delay)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()

        let resumed = try Espforge.run(["provision", "--manifest", out + "/espforge.toml", "--resume"] + ports)
        #expect(resumed.status == 0, "seed \(seed), killed after \(delay) s: \(resumed.out)\n\(resumed.err)")
        let pool = try Espforge.run(["registry", "pool", "--registry", out + "/registry.sqlite", "nvs-values.csv"])
        #expect(pool.out.contains("3 identities, 3 claimed"), "seed \(seed): \(pool.out)\(pool.err)")
        let list = try Espforge.run(["registry", "list", "--registry", out + "/registry.sqlite", "--json"])
        #expect(list.out.components(separatedBy: "\"provisioned\"").count - 1 == 3, "seed \(seed): \(list.out)")
        for i in 1...3 {
            let boot = try Espforge.run(["device", "boot", "--state", out + "/devices/dev\(i)", "--json"])
            #expect(boot.status == 0 && boot.out.contains("\"ota_0\""), "seed \(seed), dev\(i): \(boot.err)")
        }
    }
}
