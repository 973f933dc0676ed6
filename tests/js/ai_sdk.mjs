// The Vercel AI SDK against the gateway: `@ai-sdk/openai` (its default model
// speaks the Responses API, `.chat()` chat completions) and `@ai-sdk/anthropic`
// (the Messages API). Each provider parses answers and events with its own
// zod schemas, so a shape it would reject fails here. Prints one JSON object.
//
// usage: node ai_sdk.mjs <gateway url> <text model> <tool model> <thinking model>
import { generateText, stepCountIs, streamText, tool } from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";

globalThis.AI_SDK_LOG_WARNINGS = false;
const [base, textModel, toolModel, thinkModel] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: "unused" });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: "unused" });
const providers = {
  responses: (model) => openai(model),
  chat: (model) => openai.chat(model),
  anthropic: (model) => anthropic(model),
};
const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => `sunny in ${city}`,
});

const out = {};
for (const [name, provider] of Object.entries(providers)) {
  const whole = await generateText({
    model: provider(textModel),
    prompt: "Say hi",
    maxOutputTokens: 200,
  });
  const stream = streamText({
    model: provider(textModel),
    prompt: "Say hi",
    maxOutputTokens: 200,
  });
  let streamed = "";
  for await (const delta of stream.textStream) streamed += delta;
  const agent = await generateText({
    model: provider(toolModel),
    prompt: "What is the weather in Paris?",
    tools: { weather },
    stopWhen: stepCountIs(3),
    maxOutputTokens: 200,
  });
  out[name] = {
    text: whole.text,
    finishReason: whole.finishReason,
    outputTokens: whole.usage.outputTokens,
    streamed,
    streamFinishReason: await stream.finishReason,
    toolSteps: agent.steps.map((step) => step.finishReason),
    toolCalls: agent.steps.flatMap((step) =>
      step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })),
    ),
    toolText: agent.text,
  };
}
const thinking = {
  responses: await generateText({
    model: openai(thinkModel),
    prompt: "why?",
    providerOptions: { openai: { reasoningEffort: "low", reasoningSummary: "auto" } },
  }),
  anthropic: await generateText({
    model: anthropic(thinkModel),
    prompt: "why?",
    maxOutputTokens: 2000,
    providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
  }),
};
for (const [name, answer] of Object.entries(thinking)) {
  out[name].reasoning = answer.reasoningText ?? "";
  out[name].reasonedText = answer.text;
}
console.log(JSON.stringify(out));
