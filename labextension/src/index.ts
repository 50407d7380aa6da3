/**
 * nbdeploy for JupyterLab: the Deployments sidebar, its palette commands and a notebook
 * toolbar button that inserts a `%deploy` cell.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon, ToolbarButton } from '@jupyterlab/ui-components';

import { docsUrl, Fetcher, NbdeployClient } from './api';
import { deployCellSource, pickVariable } from './cell';
import { DeploymentsModel } from './model';
import { DeploymentsPanel } from './sidebar';
import deploymentsSvg from '../style/icons/deployments.svg';

export const deployIcon = new LabIcon({ name: 'nbdeploy:deployments', svgstr: deploymentsSvg });

export namespace CommandIDs {
  export const refresh = 'nbdeploy:refresh';
  export const openDocs = 'nbdeploy:open-docs';
  export const insertCell = 'nbdeploy:insert-deploy-cell';
  export const show = 'nbdeploy:show-deployments';
}

/** Insert a `%deploy` cell below the active cell, for the variable under the cursor. */
function insertDeployCell(panel: NotebookPanel): void {
  const notebook = panel.content;
  const cell = notebook.activeCell;
  let variable: string | null = null;
  if (cell && cell.editor) {
    const source = cell.model.sharedModel.getSource();
    const selection = cell.editor.getSelection();
    const a = cell.editor.getOffsetAt(selection.start);
    const b = cell.editor.getOffsetAt(selection.end);
    variable = pickVariable(source, Math.min(a, b), Math.max(a, b));
  }
  NotebookActions.insertBelow(notebook);
  const inserted = notebook.activeCell;
  if (inserted) {
    inserted.model.sharedModel.setSource(deployCellSource(variable));
    notebook.mode = 'edit';
    inserted.editor?.focus();
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbdeploy:plugin',
  description: 'Deployments sidebar for nbdeploy.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const settings = app.serviceManager.serverSettings;
    const fetcher: Fetcher = (url, init) => ServerConnection.makeRequest(url, init, settings);
    const model = new DeploymentsModel(new NbdeployClient(fetcher, settings.baseUrl));
    const panel = new DeploymentsPanel(model);
    panel.title.icon = deployIcon;
    app.shell.add(panel, 'left', { rank: 850 });
    restorer?.add(panel, 'nbdeploy-deployments');

    app.commands.addCommand(CommandIDs.show, {
      label: 'nbdeploy: Show deployments',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'nbdeploy: Refresh deployments',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.openDocs, {
      label: 'nbdeploy: Open deployment docs',
      caption: "Open the selected deployment's API docs in a new tab",
      isEnabled: () => !!model.current()?.endpoint,
      execute: () => {
        const endpoint = model.current()?.endpoint;
        if (endpoint) {
          window.open(docsUrl(endpoint), '_blank', 'noopener');
        }
      }
    });
    model.subscribe(() => app.commands.notifyCommandChanged(CommandIDs.openDocs));

    for (const command of [CommandIDs.show, CommandIDs.refresh, CommandIDs.openDocs]) {
      palette?.addItem({ command, category: 'nbdeploy' });
    }

    if (tracker) {
      app.commands.addCommand(CommandIDs.insertCell, {
        label: 'nbdeploy: Insert %deploy cell',
        caption: 'Insert a %deploy cell below, for the variable under the cursor',
        icon: deployIcon,
        isEnabled: () => !!tracker.currentWidget,
        execute: () => {
          if (tracker.currentWidget) {
            insertDeployCell(tracker.currentWidget);
          }
        }
      });
      palette?.addItem({ command: CommandIDs.insertCell, category: 'nbdeploy' });
      app.docRegistry.addWidgetExtension('Notebook', {
        createNew: (nbPanel: NotebookPanel) => {
          const button = new ToolbarButton({
            icon: deployIcon,
            label: 'Deploy',
            tooltip: 'Insert a %deploy cell below (uses the variable under the cursor)',
            onClick: () => insertDeployCell(nbPanel)
          });
          button.addClass('nbd-deploy-button');
          nbPanel.toolbar.insertItem(10, 'nbdeploy-insert-deploy', button);
          return button;
        }
      });
    }
  }
};

export default plugin;
