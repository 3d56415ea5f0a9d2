<#
.SYNOPSIS
    Remove what installers\install.ps1 installed, for this user on Windows.

.DESCRIPTION
    Stops the daemon, removes start at login (`labrouter autostart disable`: the Run key and
    its StartupApproved twin), the firewall rules of group "labrouter" (asks through UAC),
    the virtual environment, the launcher and its PATH entry. Keeps the configuration, the
    cluster key and the usage logs unless -Purge is given.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File installers\uninstall.ps1 -Purge
#>
[CmdletBinding()]
param(
    [switch]$Purge,
    [switch]$NoFirewall,
    [string]$Venv = $env:LABROUTER_VENV
)

Set-StrictMode -Version Latest
$ErrorActionPreference = "Stop"

function Say([string]$Message) { Write-Host "labrouter uninstall: $Message" }

if ($env:LABROUTER_HOME) {
    $Home_ = [IO.Path]::GetFullPath($env:LABROUTER_HOME)
    $ConfigDir = Join-Path $Home_ "config"; $DataDir = Join-Path $Home_ "data"
    $LogDir = Join-Path $Home_ "log"; $RunDir = Join-Path $Home_ "run"
} else {
    # platformdirs on Windows (appauthor=False): config and data share one folder
    $DataDir = Join-Path $env:LOCALAPPDATA "labrouter"; $ConfigDir = $DataDir
    $LogDir = Join-Path $DataDir "Logs"; $RunDir = Join-Path $DataDir "run"
}
if (-not $Venv) { $Venv = Join-Path $DataDir "venv" }
$Python = Join-Path $Venv "Scripts\python.exe"
$BinDir = Join-Path $env:LOCALAPPDATA "labrouter\bin"

if (Test-Path $Python) {
    # native stderr under "Stop" is an error in Windows PowerShell 5.1: lower it for this call
    $ErrorActionPreference = "Continue"
    $json = & $Python -m labrouter paths --json
    $ok = ($LASTEXITCODE -eq 0)
    $ErrorActionPreference = "Stop"
    if ($ok) {
        $paths = ($json -join "`n") | ConvertFrom-Json
        $ConfigDir = $paths.config_dir; $DataDir = $paths.data; $LogDir = $paths.log; $RunDir = $paths.run
    }
    Say "removing start at login"
    & $Python -m labrouter autostart disable | ForEach-Object { Write-Host "    $_" }
} else {
    Say "no labrouter in $Venv: removing the Run key directly"
    $run = "HKCU:\Software\Microsoft\Windows\CurrentVersion\Run"
    $approved = "HKCU:\Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
    Remove-ItemProperty -Path $run -Name "labrouter" -ErrorAction SilentlyContinue
    Remove-ItemProperty -Path $approved -Name "labrouter" -ErrorAction SilentlyContinue
}

# the daemon: the one install.ps1 started, then any other from this venv (started at login)
$pidFile = Join-Path $RunDir "installer-daemon.pid"
if (Test-Path $pidFile) {
    $p = Get-Process -Id ([int](Get-Content $pidFile)) -ErrorAction SilentlyContinue
    # after a reboot the number may belong to another program: only a Python is ours
    if ($p -and $p.ProcessName -notmatch '^pythonw?$') {
        Say "pid $($p.Id) in $pidFile is not labrouter any more: leaving it alone"; $p = $null
    }
    if ($p) { Say "stopping the daemon (pid $($p.Id))"; $p | Stop-Process -Force }
    Remove-Item -Force $pidFile
}
# A venv's Scripts\pythonw.exe is a redirector that starts the base interpreter as a child
# with the same arguments: match the command line as well as the executable's folder.
$venvFull = [IO.Path]::GetFullPath($Venv)
Get-CimInstance Win32_Process -Filter "Name = 'pythonw.exe' OR Name = 'python.exe'" |
    Where-Object {
        ($_.ExecutablePath -and $_.ExecutablePath.StartsWith($venvFull, [StringComparison]::OrdinalIgnoreCase)) -or
        ($_.CommandLine -and $_.CommandLine -match '-m labrouter run')
    } |
    ForEach-Object { Say "stopping labrouter (pid $($_.ProcessId))"; Stop-Process -Id $_.ProcessId -Force }

if (-not $NoFirewall -and (Get-NetFirewallRule -Group "labrouter" -ErrorAction SilentlyContinue)) {
    $cmd = "Remove-NetFirewallRule -Group 'labrouter'"
    try {
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($cmd))
        $p = Start-Process powershell -Verb RunAs -Wait -PassThru -WindowStyle Hidden `
            -ArgumentList "-NoProfile", "-EncodedCommand", $encoded
        if ($p.ExitCode -ne 0) { throw "exit code $($p.ExitCode)" }
        Say "removed the firewall rules (group labrouter)"
    } catch {
        Say "warning: the firewall rules were not removed ($_); in an administrator PowerShell: $cmd"
    }
}

if (Test-Path $Venv) { Remove-Item -Recurse -Force $Venv; Say "removed $Venv" }
if (Test-Path $BinDir) { Remove-Item -Recurse -Force $BinDir; Say "removed $BinDir" }
$userPath = [Environment]::GetEnvironmentVariable("Path", "User")
if ($userPath) {
    $parts = $userPath.Split(";") | Where-Object { $_ -and $_ -ne $BinDir }
    if (($parts -join ";") -ne $userPath) {
        [Environment]::SetEnvironmentVariable("Path", ($parts -join ";"), "User")
        Say "removed $BinDir from your PATH"
    }
}

if ($Purge) {
    foreach ($d in @($ConfigDir, $DataDir, $LogDir, $RunDir)) {
        if (Test-Path $d) { Remove-Item -Recurse -Force $d; Say "removed $d" }
    }
    if ($env:LABROUTER_HOME -and (Test-Path $Home_) -and -not (Get-ChildItem $Home_)) { Remove-Item $Home_ }
} else {
    Say "kept the configuration and cluster key in $ConfigDir (delete them with -Purge)"
}
Say "done"
