# queuestorm's Sidekiq hook: the QueuestormJob worker class and a server middleware that records the completion of
# every queuestorm-marked job (args[0] is queuestorm's marker) in queuestorm's ledger. The one line to add:
#
#     sidekiq -r ./hooks/sidekiq/queuestorm.rb ...        (or: require_relative "queuestorm" in your initializer)
#
# The ledger is $QS_LEDGER_URL when set, else Sidekiq's own Redis. $QS_WORK_MS makes QueuestormJob sleep.
require "json"
require "redis"
require "sidekiq"

module Queuestorm
  BUCKETS_PER_E = 50 # queuestorm/latency.py

  def self.marker(job)
    arg = Array(job["args"]).first
    arg = JSON.parse(arg) if arg.is_a?(String) && arg.start_with?('{"qs":')
    arg.is_a?(Hash) && arg.key?("qs") ? arg : nil
  end

  # What queuestorm's CompletionRecorder writes for one job (queuestorm/ledger.py, queuestorm/keys.py).
  def self.record(redis, marker)
    base = "queuestorm:{#{marker["run"]}}:"
    producer, seq = marker["producer"].to_i, marker["seq"].to_i
    e2e_ms = [(Time.now.to_f - marker["enqueued_at"].to_f) * 1000, 0.001].max
    old = redis.pipelined do |pipe|
      pipe.bitfield("#{base}p:#{producer}:done", "SET", "u1", seq, 1)
      pipe.hincrby("#{base}e2e", (Math.log(e2e_ms) * BUCKETS_PER_E).round.to_s, 1)
      pipe.incrby("#{base}completions", 1)
    end.first
    redis.hincrby("#{base}p:#{producer}:dup", seq.to_s, 1) if old.first == 1
  end

  # A URL with every credential (userinfo, password= and username= parameters) replaced by ***.
  def self.redact(url)
    url.to_s.sub(%r{\A([a-z]+://)?([^/?#@]*)@}) { "#{$1}#{$2.include?(":") ? $2.split(":", 2).first + ":***" : "***"}@" }
       .gsub(/([?&;](?:password|username)=)[^&#;]*/i, '\1***')
  end

  class CompletionMiddleware
    def call(_worker, job, _queue)
      yield
      marker = Queuestorm.marker(job)
      return unless marker
      url = ENV["QS_LEDGER_URL"].to_s
      begin
        if url.empty?
          Sidekiq.redis { |conn| Queuestorm.record(conn, marker) }
        else
          Queuestorm.record(Thread.current[:queuestorm_ledger] ||= Redis.new(url: url), marker)
        end
      rescue Redis::BaseError => e # one line naming the ledger and what it refused, never its password
        where = url.empty? ? "Sidekiq's own Redis" : Queuestorm.redact(url)
        raise RuntimeError, "queuestorm hook: ledger Redis at #{where}: #{e.class}: #{e.message.lines.first.to_s.strip}"
      end
    end
  end
end

class QueuestormJob
  include Sidekiq::Worker

  def perform(_marker)
    work_ms = ENV["QS_WORK_MS"].to_f
    sleep(work_ms / 1000) if work_ms > 0
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add Queuestorm::CompletionMiddleware }
end
