#!/usr/bin/env ruby
# frozen_string_literal: true

# Renders a BOSH job's templates the way the director does, for tests: real ERB (trim_mode '-')
# evaluated against a small stand-in for BOSH's template API - the subset this release uses:
#   p(name | [names], default?)   raises UnknownProperty when unset and no default is given
#   if_p(*names) { |*values| } [.else { }]
#   spec.<field>                   an OpenStruct of the instance spec (unset fields are nil)
#   link(name) / if_link(name) { |link| }, link.instances[i].{address,index,bootstrap,id,az,name},
#   link.p / link.if_p, instance.p
# Properties follow the director's rules: only those the job's spec declares reach a template
# (others are dropped silently), and a declared property that is unset takes the spec's default.
#
# Input (stdin, JSON): {"job_dir": DIR, "properties": {...}, "spec": {...},
#                       "links": {"<name>": {"instances": [...], "properties": {...}}},
#                       "templates": [names] (optional; default: every template + monit)}
# Output (stdout, JSON): {"rendered": {"<destination>": "<text>", ...}}  (exit 0)
#                     or {"error": {"class", "message", "template", "line"}}  (exit 1)

require 'erb'
require 'json'
require 'ostruct'
require 'yaml'

module FakeBosh
  # Same class name and message as Bosh::Common::Template::UnknownProperty.
  class UnknownProperty < StandardError
    attr_reader :name

    def initialize(names)
      @name = names
      super("Can't find property '#{names}'")
    end
  end

  class UnknownLink < StandardError
    def initialize(name)
      super("Can't find link '#{name}'")
    end
  end

  module Lookup
    module_function

    def lookup(tree, dotted)
      dotted.split('.').reduce(tree) do |node, key|
        return nil unless node.is_a?(Hash)

        node[key]
      end
    end

    def insert(tree, dotted, value)
      *parents, leaf = dotted.split('.')
      parents.reduce(tree) { |node, key| node[key] ||= {} }[leaf] = value
    end
  end

  # What `if_p` / `if_link` return: `.else` runs only when the block did not.
  class ActiveElseBlock
    def initialize(context)
      @context = context
    end

    def else
      yield
    end

    def else_if_p(*names, &block)
      @context.if_p(*names, &block)
    end

    def else_if_link(name, &block)
      @context.if_link(name, &block)
    end
  end

  class InactiveElseBlock
    def else; end

    def else_if_p(*_names)
      self
    end

    def else_if_link(_name)
      self
    end
  end

  # p/if_p over a properties hash, shared by the context, links and link instances.
  module PropertyAccess
    def p(*args)
      names = Array(args[0])
      names.each do |name|
        value = Lookup.lookup(property_tree, name)
        return value unless value.nil?
      end
      return args[1] if args.length == 2

      raise UnknownProperty, names
    end

    def if_p(*names)
      values = names.map do |name|
        value = Lookup.lookup(property_tree, name)
        return ActiveElseBlock.new(self) if value.nil?

        value
      end
      yield(*values)
      InactiveElseBlock.new
    end
  end

  class LinkInstance
    include PropertyAccess
    attr_reader :name, :index, :id, :az, :address, :bootstrap, :properties

    def initialize(hash)
      @name = hash['name']
      @index = hash['index']
      @id = hash['id']
      @az = hash['az']
      @address = hash['address']
      @bootstrap = hash['bootstrap']
      @properties = hash['properties'] || {}
    end

    def property_tree
      @properties
    end
  end

  class Link
    include PropertyAccess
    attr_reader :instances, :properties

    def initialize(hash)
      @instances = (hash['instances'] || []).map { |i| LinkInstance.new(i) }
      @properties = hash['properties'] || {}
    end

    def property_tree
      @properties
    end

    def address(*)
      raise NotImplementedError, 'link.address requires bosh director'
    end
  end

  class Context
    include PropertyAccess
    attr_reader :name, :index, :spec, :raw_properties

    def initialize(spec_hash)
      @name = spec_hash['name']
      @index = spec_hash['index']
      @raw_properties = spec_hash['properties'] || {}
      @links = spec_hash['links'] || {}
      @spec = openstruct(spec_hash)
    end

    def property_tree
      @raw_properties
    end

    def get_binding
      binding
    end

    def link(name)
      found = @links[name]
      raise UnknownLink, name if found.nil? || !found.key?('instances')

      Link.new(found)
    end

    def if_link(name)
      found = @links[name]
      return ActiveElseBlock.new(self) if found.nil? || !found.key?('instances')

      yield Link.new(found)
      InactiveElseBlock.new
    end

    private

    def openstruct(object)
      case object
      when Hash then OpenStruct.new(object.transform_values { |v| openstruct(v) })
      when Array then object.map { |v| openstruct(v) }
      else object
      end
    end
  end

  module_function

  # The properties a template sees: declared ones only, the spec's default when unset.
  def job_properties(job_spec, manifest_properties)
    result = {}
    (job_spec['properties'] || {}).each do |name, definition|
      value = Lookup.lookup(manifest_properties, name)
      value = (definition || {})['default'] if value.nil?
      Lookup.insert(result, name, value)
    end
    result
  end

  # Links the job consumes; a link it does not declare is an error, as in BOSH's own test helper.
  def job_links(job_spec, links)
    declared = (job_spec['consumes'] || []).map { |c| c['name'] }
    unknown = links.keys - declared
    raise ArgumentError, "link(s) #{unknown.join(', ')} not consumed by this job" unless unknown.empty?

    links
  end

  def templates_of(job_dir, job_spec)
    mapping = (job_spec['templates'] || {}).map { |source, dest| [File.join(job_dir, 'templates', source), dest] }
    monit = File.join(job_dir, 'monit')
    mapping << [monit, 'monit'] if File.exist?(monit)
    mapping
  end

  def render(request)
    job_dir = request.fetch('job_dir')
    job_spec = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
    spec_hash = (request['spec'] || {}).merge(
      'properties' => job_properties(job_spec, request['properties'] || {}),
      'links' => job_links(job_spec, request['links'] || {})
    )
    wanted = request['templates']
    rendered = {}
    templates_of(job_dir, job_spec).each do |path, destination|
      next if wanted && !wanted.include?(File.basename(path)) && !wanted.include?(destination)

      rendered[destination] = render_one(path, spec_hash)
    end
    rendered
  end

  # A fresh context per template, as the director builds one per template.
  def render_one(path, spec_hash)
    erb = ERB.new(File.read(path), trim_mode: '-')
    erb.filename = path
    erb.result(Context.new(spec_hash).get_binding)
  rescue StandardError, ScriptError => e
    line = e.backtrace&.map { |l| l[/\A#{Regexp.escape(path)}:(\d+)/, 1] }&.compact&.first
    raise TemplateError.new(e, File.basename(path), line&.to_i)
  end

  # "Error filling in template 'X' (line N: message)", the director's wording.
  class TemplateError < StandardError
    attr_reader :cause_class, :template, :line, :detail

    def initialize(error, template, line)
      @cause_class = error.class.name.split('::').last
      @template = template
      @line = line
      @detail = error.message
      super("Error filling in template '#{template}' (line #{line || '?'}: #{error.message})")
    end
  end
end

if $PROGRAM_NAME == __FILE__
  begin
    puts JSON.generate('rendered' => FakeBosh.render(JSON.parse($stdin.read)))
  rescue FakeBosh::TemplateError => e
    puts JSON.generate('error' => { 'class' => e.cause_class, 'message' => e.message, 'detail' => e.detail,
                                    'template' => e.template, 'line' => e.line })
    exit 1
  end
end
